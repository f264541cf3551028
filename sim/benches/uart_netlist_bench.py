"""cocotb bench: a board top's synthesized netlist, driven through its UART pins.

Reads ``SPIKEFAB_UART_CASE`` (JSON: ``clock``, the top's clock pin; ``divisor``, ``period_ps``,
``reset_cycles``, ``exchanges``: hex strings of the bytes of each exchange) and writes ``SPIKEFAB_UART_RESULT`` (JSON: the bytes the board sent
back for each exchange, hex). Bits go on the receive pin at
``divisor`` clock cycles each (8N1); the transmit pin is sampled mid-bit. An exchange ends when
the board has answered every frame of it (one END byte per frame) or after a timeout.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from spikefab.firmware.protocol import SlipDecoder
from spikefab.hdl.abi import END

#: Cycles after the last byte sent after which an exchange counts as unanswered.
QUIET_CYCLES = 200_000


async def _send_byte(dut, clk, value, divisor):
    for bit in [0] + [(value >> k) & 1 for k in range(8)] + [1]:
        dut.uart_0__rx__io.value = bit
        await ClockCycles(clk, divisor)


async def _receive(dut, clk, divisor, out: bytearray):
    tx = dut.uart_0__tx__io
    while True:
        await FallingEdge(tx)
        await ClockCycles(clk, divisor // 2)
        if int(tx.value) != 0:
            continue                      # a glitch, not a start bit
        value = 0
        for k in range(8):
            await ClockCycles(clk, divisor)
            value |= int(tx.value) << k
        await ClockCycles(clk, divisor)
        assert int(tx.value) == 1, f"framing error on the board's transmit pin after {out.hex()}"
        out.append(value)


@cocotb.test()
async def exchanges(dut):
    case = json.loads(open(os.environ["SPIKEFAB_UART_CASE"]).read())
    divisor = case["divisor"]
    clk = getattr(dut, case["clock"])
    dut.uart_0__rx__io.value = 1
    Clock(clk, case["period_ps"], unit="ps", impl="gpi").start()
    # Power-on reset: the top holds its chip in reset for 16 us after "lock".
    await ClockCycles(clk, case["reset_cycles"])
    received = bytearray()
    cocotb.start_soon(_receive(dut, clk, divisor, received))
    results = []
    for exchange in case["exchanges"]:
        data = bytes.fromhex(exchange)
        frames = len(SlipDecoder().feed(data))
        start = len(received)
        for byte in data:
            await _send_byte(dut, clk, byte, divisor)
        waited = 0
        while received[start:].count(END) < 2 * frames and waited < QUIET_CYCLES:
            await ClockCycles(clk, 20 * divisor)
            waited += 20 * divisor
        results.append({"answer": bytes(received[start:]).hex()})
    with open(os.environ["SPIKEFAB_UART_RESULT"], "w") as f:
        json.dump({"results": results}, f)
