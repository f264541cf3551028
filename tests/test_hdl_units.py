"""The small gateware pieces, each alone in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikefab.hdl.counter import Counter
from spikefab.hdl.lif import LIFDatapath
from spikefab.hdl.synapse import SynapseMemory
from spikefab.sim.golden import NeuronConfig, lif_update
from spikefab.hdl.abi import CoreShape, ResetMode

from conftest import raises_in_constructor


def _simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("input_register", [False, True])
@pytest.mark.parametrize("v_bits, w_bits, axons", [(16, 8, 1024), (12, 4, 37)])
def test_lif_datapath_matches_golden(base_seed, v_bits, w_bits, axons, input_register):
    """Random and extreme neurons under random parameters, one per cycle, with idle gaps."""
    seed = base_seed + v_bits
    rng = np.random.default_rng(seed)
    shape = CoreShape(axons=axons, neurons=1, w_bits=w_bits, v_bits=v_bits)
    acc_lo, acc_hi = -(1 << (shape.accumulator_bits - 1)), (1 << (shape.accumulator_bits - 1)) - 1
    dut = LIFDatapath(shape, input_register=input_register)
    configs = [NeuronConfig(int(t), int(k), ResetMode(int(r))) for t, k, r in zip(
        rng.choice([1, shape.v_max, *rng.integers(1, shape.v_max, 6)], 12),
        rng.choice([0, v_bits - 1, *rng.integers(0, v_bits, 6)], 12),
        rng.integers(0, 2, 12))]
    count = 200
    for config in configs:
        v = rng.choice([shape.v_min, shape.v_max, -1, 0, 1,
                        *rng.integers(shape.v_min, shape.v_max + 1, 20)], count)
        i = rng.choice([acc_lo, acc_hi, 0, *rng.integers(acc_lo, acc_hi + 1, 20),
                        *rng.integers(-300, 300, 20)], count)
        b = rng.choice([shape.v_min, shape.v_max, 0, *rng.integers(-50, 50, 10)], count)
        valid = rng.random(count) < 0.8
        expected_v, expected_s = lif_update(v, i, b, config, v_bits)

        async def testbench(ctx, config=config, v=v, i=i, b=b, valid=valid):
            ctx.set(dut.threshold, config.threshold)
            ctx.set(dut.leak, config.leak)
            ctx.set(dut.reset, config.reset)
            seen = []
            for k in range(count + dut.latency):
                if k < count:
                    ctx.set(dut.i_valid, int(valid[k]))
                    ctx.set(dut.i_index, k % 256)
                    ctx.set(dut.i_v, int(v[k]))
                    ctx.set(dut.i_acc, int(i[k]))
                    ctx.set(dut.i_bias, int(b[k]))
                else:
                    ctx.set(dut.i_valid, 0)
                await ctx.tick()
                if ctx.get(dut.o_valid):
                    seen.append((ctx.get(dut.o_index), ctx.get(dut.o_v), ctx.get(dut.o_spike)))
            want = [(k % 256, int(expected_v[k]), int(expected_s[k]))
                    for k in range(count) if valid[k]]
            assert seen == want, f"seed {seed}, {config}"

        _simulate(dut, testbench)


@pytest.mark.parametrize("registered, bank_depth", [(False, None), (True, None), (True, 16)])
def test_synapse_memory_single_port(base_seed, registered, bank_depth):
    """Plain, registered, and registered in banks (three banks of 16, 16 and 8 words)."""
    rng = np.random.default_rng(base_seed)
    dut = SynapseMemory(depth=40, lanes=4, w_bits=4, registered=registered)
    if bank_depth:
        dut.BANK_DEPTH = bank_depth
    latency = 2 if registered else 1
    contents = rng.integers(-8, 8, size=(40, 4))

    async def testbench(ctx):
        def data():
            return [ctx.get(dut.r_data[j]) for j in range(4)]

        for addr in rng.permutation(40):
            ctx.set(dut.addr, int(addr))
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_data, contents[addr].tolist())
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        # Back-to-back reads: each word arrives ``latency`` cycles after its address.
        order = rng.permutation(40)
        for k in range(len(order) + latency - 1):
            if k < len(order):
                ctx.set(dut.addr, int(order[k]))
            ctx.set(dut.r_en, int(k < len(order)))
            await ctx.tick()
            if k >= latency - 1:
                addr = order[k - latency + 1]
                assert data() == contents[addr].tolist(), f"seed {base_seed}: word {addr}"
        # r_data holds while r_en is low, and a write cycle does not read.
        held = data()
        ctx.set(dut.r_en, 0)
        ctx.set(dut.addr, 0)
        for _ in range(latency + 1):
            await ctx.tick()
            assert data() == held
        ctx.set(dut.r_en, 1)
        ctx.set(dut.w_en, 1)
        ctx.set(dut.w_data, [1, 2, 3, 4])
        for _ in range(latency):
            await ctx.tick()
            ctx.set(dut.w_en, 0)
            ctx.set(dut.r_en, 0)
        assert data() == held
        ctx.set(dut.r_en, 1)
        for _ in range(latency):
            await ctx.tick()
            ctx.set(dut.r_en, 0)
        assert data() == [1, 2, 3, 4]

    _simulate(dut, testbench)


def test_synapse_memory_rejects_an_unknown_style():
    with raises_in_constructor(ValueError, r"memory style must be a MemoryStyle "
                                           r"\('block', 'spram'\), not 'sram'"):
        SynapseMemory(depth=4, lanes=2, w_bits=8, style="sram")


@pytest.mark.parametrize("width, step_width", [(32, 1), (32, 9), (12, 4), (8, 1)])
def test_counter_adds_wraps_and_clears(base_seed, width, step_width):
    """Random enables, steps and clears against a Python count (the logic form; the DSP form
    is simulated in the board's post-synthesis check, tests/test_netlist.py)."""
    seed = base_seed + width + step_width
    rng = np.random.default_rng(seed)
    dut = Counter(width, step_width=step_width)
    # Close to the wrap first, where that takes few cycles (a 12-bit counter); from 0 otherwise.
    start = (1 << width) - 40 if width <= 12 else 0

    async def testbench(ctx):
        want = 0
        # Reach the wrap quickly: the largest step, every cycle.
        ctx.set(dut.step, (1 << step_width) - 1)
        ctx.set(dut.en, 1)
        while want < start:
            await ctx.tick()
            want += (1 << step_width) - 1
        want %= 1 << width
        assert ctx.get(dut.value) == want, f"seed {seed}"
        for _ in range(400):
            en, clear = bool(rng.random() < 0.7), bool(rng.random() < 0.05)
            step = int(rng.integers(0, 1 << step_width))
            ctx.set(dut.en, en)
            ctx.set(dut.clear, clear)
            ctx.set(dut.step, step)
            await ctx.tick()
            want = 0 if clear else (want + step) % (1 << width) if en else want
            assert ctx.get(dut.value) == want, f"seed {seed}"

    _simulate(dut, testbench)


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=33), r"width must be an integer in \[1, 32\], not 33"),
    (dict(width=True), r"width must be an integer in \[1, 32\], not True"),
    (dict(step_width=17), r"step_width must be an integer in \[1, 16\], not 17"),
])
def test_counter_validation(kwargs, message):
    with raises_in_constructor(ValueError, message):
        Counter(**kwargs)
