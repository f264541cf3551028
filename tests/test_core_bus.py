"""The core's memory bus in Amaranth's simulator: every region, bounds, parameter checks."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikefab.hdl.core import LIFCore
from spikefab.hdl.abi import CORE_REGIONS, COUNTERS, CoreShape, Region, Register

from conftest import raises_in_constructor


async def bus_write(ctx, dut, addr, value):
    mm = dut.memory_map
    ctx.set(dut.bus.req.payload.as_value(), mm.request(addr, write=True, data=mm.to_word(value)))
    ctx.set(dut.bus.req.valid, 1)
    await ctx.tick().until(dut.bus.req.ready)
    ctx.set(dut.bus.req.valid, 0)


async def bus_read(ctx, dut, addr, signed=True):
    mm = dut.memory_map
    ctx.set(dut.bus.req.payload.as_value(), mm.request(addr, write=False))
    ctx.set(dut.bus.req.valid, 1)
    await ctx.tick().until(dut.bus.req.ready)
    ctx.set(dut.bus.req.valid, 0)
    ctx.set(dut.bus.resp.ready, 1)
    word, = await ctx.tick().sample(dut.bus.resp.payload).until(dut.bus.resp.valid)
    ctx.set(dut.bus.resp.ready, 0)
    return mm.to_signed(word) if signed else word


def _run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("register_reads", [False, True])
def test_every_region_round_trips_and_out_of_range_changes_nothing(base_seed, register_reads):
    rng = np.random.default_rng(base_seed)
    shape = CoreShape(axons=10, neurons=5, w_bits=8)
    dut = LIFCore(shape, lanes=4, register_reads=register_reads)
    mm = dut.memory_map
    weights = rng.integers(-128, 128, size=(10, 5))
    values = {region: rng.integers(-32768, 32768, size=5)
              for region in (Region.MEMBRANE, Region.BIAS)}
    # A write to I clears it (the value is ignored).
    values[Region.ACCUMULATOR] = np.zeros(5, np.int64)

    async def snapshot(ctx):
        state = {}
        for region in CORE_REGIONS:
            for offset in range(mm.region_size(region)):
                state[region, offset] = await bus_read(ctx, dut, mm.addr(region, offset))
        return state

    async def testbench(ctx):
        assert ctx.get(dut.idle)
        ctx.set(dut.bus.req.payload.as_value(), mm.request(0, write=False))
        ctx.set(dut.bus.req.valid, 1)
        await ctx.tick().until(dut.bus.req.ready)
        ctx.set(dut.bus.req.valid, 0)
        assert not ctx.get(dut.idle)  # busy until the response has been taken
        ctx.set(dut.bus.resp.ready, 1)
        await ctx.tick().until(dut.bus.resp.valid)
        ctx.set(dut.bus.resp.ready, 0)
        assert ctx.get(dut.idle)
        for addr, word in mm.synapse_words_of(weights):
            await bus_write(ctx, dut, addr, word)
        for region, array in values.items():
            for n, value in enumerate(array):
                await bus_write(ctx, dut, mm.addr(region, n), int(value))
        await bus_write(ctx, dut, mm.addr(Region.REGISTER, Register.THRESHOLD), 77)
        before = await snapshot(ctx)
        # Read back what was written (I: cleared, whatever was written).
        for region, array in values.items():
            assert [before[region, n] for n in range(5)] == array.tolist()
        for a in range(10):
            for r in range(mm.rows):
                word = before[Region.SYNAPSE, a * mm.rows + r] & ((1 << 32) - 1)
                lanes = [mm.to_signed(word >> (8 * j), 8) for j in range(4)]
                want = [int(weights[a, r * 4 + j]) if r * 4 + j < 5 else 0 for j in range(4)]
                assert lanes == want
        assert before[Region.REGISTER, Register.THRESHOLD] == 77

        # Past the end of every region, and in regions that do not exist.
        wild = [(Region.SYNAPSE, mm.synapse_words), (Region.SYNAPSE, (1 << mm.offset_bits) - 1),
                (Region.MEMBRANE, 5), (Region.MEMBRANE, 13), (Region.BIAS, 8),
                (Region.ACCUMULATOR, 5), (Region.ACCUMULATOR, 12), (Region.REGISTER, len(Register)),
                (5, 0), (6, 3), (7, 1)]
        for region, offset in wild:
            addr = int(region) << mm.offset_bits | offset
            await bus_write(ctx, dut, addr, -1)
            assert await bus_read(ctx, dut, addr) == 0, (region, offset)
        # Parameter values the golden model rejects are ignored.
        for reg, bad in [(Register.THRESHOLD, 0), (Register.THRESHOLD, 32768), (Register.LEAK, 16),
                         (Register.RESET, 2)]:
            await bus_write(ctx, dut, mm.addr(Region.REGISTER, reg), bad)
        assert await snapshot(ctx) == before

    _run(dut, testbench)


def test_a_counter_write_clears_that_counter_alone():
    shape = CoreShape(axons=10, neurons=5, w_bits=8)
    dut = LIFCore(shape, lanes=4)
    mm = dut.memory_map
    counters = list(COUNTERS)

    async def testbench(ctx):
        for axon in (1, 2, 3, 12):      # axon 12 is out of range: DROP_RANGE
            ctx.set(dut.events.payload.axon, axon)
            ctx.set(dut.events.valid, 1)
            await ctx.tick().until(dut.events.ready)
            ctx.set(dut.events.valid, 0)
        await ctx.tick().until(dut.idle)
        before = [await bus_read(ctx, dut, mm.addr(Region.REGISTER, r), signed=False)
                  for r in counters]
        assert before == [3, 3 * shape.neurons, 0, 1, 0]
        # The value written is ignored: any write clears the counter, and only that one.
        await bus_write(ctx, dut, mm.addr(Region.REGISTER, Register.SOPS), 123456)
        await bus_write(ctx, dut, mm.addr(Region.REGISTER, Register.DROP_RANGE), 0)
        after = [await bus_read(ctx, dut, mm.addr(Region.REGISTER, r), signed=False)
                 for r in counters]
        assert after == [3, 0, 0, 0, 0]

    _run(dut, testbench)


@pytest.mark.parametrize("lanes", [1, 4])
def test_an_accumulator_write_clears_that_neuron_alone(lanes):
    shape = CoreShape(axons=4, neurons=5, w_bits=8)
    dut = LIFCore(shape, lanes=lanes)
    mm = dut.memory_map
    weights = np.zeros((4, 5), np.int64)
    weights[1] = [1, -2, 3, -4, 5]

    async def testbench(ctx):
        for addr, word in mm.synapse_words_of(weights):
            await bus_write(ctx, dut, addr, word)
        for _ in range(2):
            ctx.set(dut.events.payload.axon, 1)
            ctx.set(dut.events.valid, 1)
            await ctx.tick().until(dut.events.ready)
            ctx.set(dut.events.valid, 0)
        await ctx.tick().until(dut.idle)
        acc = [await bus_read(ctx, dut, mm.addr(Region.ACCUMULATOR, n)) for n in range(5)]
        assert acc == [2, -4, 6, -8, 10]
        # The value written is ignored: the neuron's I is cleared, its row's other lanes kept.
        await bus_write(ctx, dut, mm.addr(Region.ACCUMULATOR, 2), 777)
        acc = [await bus_read(ctx, dut, mm.addr(Region.ACCUMULATOR, n)) for n in range(5)]
        assert acc == [2, -4, 0, -8, 10]

    _run(dut, testbench)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(shape=(4, 4)), TypeError, r"shape must be a CoreShape, not \(4, 4\)"),
    (dict(lanes=3), ValueError, r"lanes must be one of \(1, 2, 4, 8, 16, 32\), not 3"),
    (dict(memory="dram"), ValueError, r"memory must be a MemoryStyle \('block', 'spram'\), "
                                      r"not 'dram'"),
    (dict(spike_fifo_depth=3), ValueError, r"spike_fifo_depth must be 0 or an integer in \[4, 256\]"),
])
def test_constructor_validation(kwargs, error, message):
    kwargs = {"shape": CoreShape(8, 8, w_bits=8), **kwargs}
    with raises_in_constructor(error, message):
        LIFCore(kwargs.pop("shape"), **kwargs)
