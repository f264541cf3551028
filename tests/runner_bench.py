"""cocotb bench for the counter in tests/test_runner.py (through its top-level ports only)."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.en.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def counter_counts(dut):
    await _reset(dut)
    dut.en.value = 1
    for _ in range(5):
        await RisingEdge(dut.clk)
    dut.en.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert dut.count.value.to_unsigned() == 5


@cocotb.test()
async def counter_fails_on_purpose(dut):
    await _reset(dut)
    await ReadOnly()
    assert dut.count.value.to_unsigned() == 1, "the counter starts at 0"
