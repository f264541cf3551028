"""The LIF core's units (the ``core_*`` modules of hdl/), each alone in Amaranth's simulator,
driven as the core's state machine drives it and checked against the golden model or a Python
model."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from spikefab.hdl.abi import (COUNTER_BITS, COUNTERS, REGISTERS, CoreMemoryMap, CoreShape,
                              Region, Register, ResetMode, to_signed)
from spikefab.hdl.core_bus import BusEngine
from spikefab.hdl.core_events import EventEngine
from spikefab.hdl.core_registers import CoreRegisters
from spikefab.hdl.core_update import UpdateEngine
from spikefab.hdl.lif import LIFDatapath
from spikefab.hdl.synapse import SynapseMemory
from spikefab.sim.golden import CoreModel, NeuronConfig, lif_update


def _simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def _acc_memory(mm):
    """I as LIFCore builds it: R rows of P lanes, a write enable per lane, the read port
    transparent when R = 1."""
    memory = Memory(shape=data.ArrayLayout(signed(mm.shape.accumulator_bits), mm.lanes),
                    depth=mm.rows, init=[])
    i_wr = memory.write_port(granularity=1)
    i_rd = memory.read_port(transparent_for=(i_wr,) if mm.rows == 1 else ())
    return memory, i_rd, i_wr


def _collides(rd, wr):
    return rd.en & wr.en.any() & (rd.addr == wr.addr)


# ---- the register file ----

@pytest.mark.parametrize("v_bits", [16, 9])
def test_register_file_matches_a_model(base_seed, v_bits):
    """Random writes (in and out of range, to every offset and beyond), random counts, every
    register read back every cycle."""
    seed = base_seed + v_bits
    rng = np.random.default_rng(seed)
    shape = CoreShape(axons=20, neurons=12, w_bits=8, v_bits=v_bits)
    mm = CoreMemoryMap(shape, 4)
    dut = CoreRegisters(shape, offset_bits=mm.offset_bits, data_bits=mm.data_bits,
                        dsp_counters=(Register.SOPS,))
    params = [reg for reg, spec in REGISTERS.items() if not spec.counter]
    members = {Register.THRESHOLD: dut.threshold, Register.LEAK: dut.leak,
               Register.RESET: dut.reset_mode}

    async def testbench(ctx):
        model = {reg: REGISTERS[reg].reset_of(shape) for reg in REGISTERS}
        assert [ctx.get(members[reg]) for reg in params] == [model[reg] for reg in params]
        assert model[Register.RESET] == ResetMode.SUBTRACT
        for _ in range(400):
            offset = int(rng.choice([rng.integers(0, len(Register)),
                                     rng.integers(0, 1 << mm.offset_bits)], p=[0.9, 0.1]))
            lo, hi = REGISTERS[Register(offset % len(Register))].range_of(shape)
            value = int(rng.choice([rng.integers(lo, hi + 1), lo - 1, hi + 1,
                                    rng.integers(0, 1 << mm.data_bits)]) % (1 << mm.data_bits))
            ctx.set(dut.offset, offset)
            ctx.set(dut.data, value)
            # As a bus request: the offset and the value first, then (perhaps) the write.
            for write in (False, bool(rng.random() < 0.5)):
                ctx.set(dut.write, write)
                count = {reg: bool(rng.random() < 0.5) for reg in COUNTERS}
                for reg in COUNTERS:
                    ctx.set(getattr(dut.count, REGISTERS[reg].name), count[reg])
                want = model[Register(offset)] if offset < len(Register) else 0
                assert ctx.get(dut.r_data) == want, f"seed {seed}: offset {offset}"
                await ctx.tick()
                for reg in COUNTERS:
                    step = shape.neurons if reg == Register.SOPS else 1
                    model[reg] = (model[reg] + step * count[reg]) % (1 << COUNTER_BITS)
                if write and offset < len(Register):
                    reg = Register(offset)
                    if REGISTERS[reg].counter:
                        model[reg] = 0        # a write clears a counter
                    elif REGISTERS[reg].accepts(shape, value):
                        model[reg] = value    # a value out of range is ignored
                assert [ctx.get(members[reg]) for reg in params] == \
                    [model[reg] for reg in params], f"seed {seed}"

    _simulate(dut, testbench)


def test_register_file_write_checks_the_held_value():
    """A write is judged by the value of the cycle before (the bus request holds its data):
    an out-of-range value is ignored, an in-range one taken."""
    shape = CoreShape(axons=4, neurons=4, w_bits=8)
    dut = CoreRegisters(shape, offset_bits=3, data_bits=32)

    async def testbench(ctx):
        ctx.set(dut.offset, Register.LEAK)
        for value, taken in [(16, False), (15, True), (0, True), (99, False)]:
            ctx.set(dut.data, value)
            await ctx.tick()
            ctx.set(dut.write, 1)
            before = ctx.get(dut.leak)
            await ctx.tick()
            ctx.set(dut.write, 0)
            assert ctx.get(dut.leak) == (value if taken else before)

    _simulate(dut, testbench)


# ---- the event engine ----

class _EventBench(Elaboratable):
    """The event engine with the synapse memory and I, wired as LIFCore wires them; the
    synapse memory is loaded through ``load_*``."""

    def __init__(self, mm, register_reads):
        self.mm = mm
        self.register_reads = register_reads
        self.engine = EventEngine(mm, register_reads=register_reads)
        self.i_mem, self.i_rd, self.i_wr = _acc_memory(mm)
        self.synapses = SynapseMemory(depth=mm.synapse_words, lanes=mm.lanes,
                                      w_bits=mm.shape.w_bits, registered=register_reads)
        self.load_en = Signal()
        self.load_addr = Signal.like(self.synapses.addr)
        self.load_data = Signal(self.synapses.word)
        self.collision = Signal()

    def elaborate(self, platform):
        m = Module()
        mm = self.mm
        m.submodules.engine = ev = self.engine
        m.submodules.synapses = syn = self.synapses
        m.submodules.i_mem = self.i_mem
        wiring.connect(m, ev.i_rd, self.i_rd)
        with m.If(ev.i_wr.en):
            m.d.comb += [self.i_wr.addr.eq(ev.i_wr.addr), self.i_wr.en.eq((1 << mm.lanes) - 1),
                         self.i_wr.data.eq(ev.i_wr.data)]
        with m.If(self.load_en):
            m.d.comb += [syn.addr.eq(self.load_addr), syn.w_en.eq(1),
                         syn.w_data.eq(self.load_data)]
        with m.Else():
            m.d.comb += [syn.addr.eq(ev.syn_rd.addr), syn.r_en.eq(ev.syn_rd.en)]
        m.d.comb += ev.syn_rd.data.eq(syn.r_data)
        if self.mm.rows > 1:
            m.d.comb += self.collision.eq(_collides(self.i_rd, self.i_wr))
        return m


@pytest.mark.parametrize("register_reads", [False, True])
@pytest.mark.parametrize("neurons, lanes, budget", [(7, 4, None), (3, 4, 5), (5, 1, 9)])
def test_event_engine_matches_golden(base_seed, neurons, lanes, budget, register_reads):
    """Events (in range, out of range, past the budget: I wraps), back to back and with gaps,
    over two ticks: I and the counts equal the golden model's after each tick."""
    seed = base_seed + neurons + lanes + register_reads
    rng = np.random.default_rng(seed)
    shape = CoreShape(axons=6, neurons=neurons, w_bits=8, events_per_tick=budget)
    mm = CoreMemoryMap(shape, lanes)
    bench = _EventBench(mm, register_reads)
    ev = bench.engine
    weights = rng.integers(shape.w_min, shape.w_max + 1, size=(shape.axons, neurons))
    golden = CoreModel(shape, weights, NeuronConfig(1, 0, ResetMode.ZERO))
    ticks = [rng.choice([*range(shape.axons), shape.axons, 1023], size=14) for _ in range(2)]

    async def testbench(ctx):
        for addr, word in mm.synapse_words_of(weights):
            ctx.set(bench.load_en, 1)
            ctx.set(bench.load_addr, addr & ((1 << mm.offset_bits) - 1))
            ctx.set(bench.load_data.as_value(), word)
            await ctx.tick()
        ctx.set(bench.load_en, 0)
        counts = {"delivered": 0, "dropped_range": 0, "over_budget": 0}
        for axons in ticks:
            golden.deliver(axons)
            queue, running = list(axons), False
            while queue or running or not ctx.get(ev.idle):
                # The state machine: take an event in IDLE, or in EVENT's last cycle.
                offered = bool(queue) and rng.random() < 0.8
                ctx.set(ev.events.valid, offered)
                if offered:
                    ctx.set(ev.events.payload.axon, int(queue[0]))
                ctx.set(ev.run, running)
                take = offered and (not running or ctx.get(ev.last))
                ctx.set(ev.take, take)
                assert ctx.get(ev.events.ready) == take
                if take:
                    deliver = ctx.get(ev.deliver)
                    assert deliver == (queue[0] < shape.axons)
                for name in counts:
                    counts[name] += ctx.get(getattr(ev, name))
                next_running = (deliver if take else running and not ctx.get(ev.last))
                if take:
                    queue.pop(0)
                assert not ctx.get(bench.collision), f"seed {seed}"
                await ctx.tick()
                running = next_running
            ctx.set(ev.events.valid, 0)
            ctx.set(ev.run, 0)
            ctx.set(ev.take, 0)
            acc = [v for row in range(mm.rows) for v in ctx.get(bench.i_mem.data[row])]
            assert acc[:neurons] == golden.i[0].tolist(), f"seed {seed}"
            assert counts["delivered"] == golden.counters.events
            assert counts["dropped_range"] == golden.counters.drop_range
            assert counts["over_budget"] == golden.counters.over_budget
            # The update: I cleared, a new budget.
            golden.update()
            for row in range(mm.rows):
                ctx.set(bench.i_mem.data[row], [0] * lanes)
            ctx.set(ev.new_tick, 1)
            await ctx.tick()
            ctx.set(ev.new_tick, 0)
            counts["delivered"] = 0
            golden.counters.events = 0

    _simulate(bench, testbench)


# ---- the update engine ----

class _UpdateBench(Elaboratable):
    """The update engine with V, B and I, and I's lane multiplexer, as LIFCore wires them."""

    def __init__(self, mm, spike_fifo_depth, register_reads):
        self.mm = mm
        shape = mm.shape
        self.engine = UpdateEngine(mm, spike_fifo_depth=spike_fifo_depth,
                                   register_reads=register_reads)
        self.v_mem = Memory(shape=signed(shape.v_bits), depth=shape.neurons, init=[])
        self.b_mem = Memory(shape=signed(shape.v_bits), depth=shape.neurons, init=[])
        self.i_mem, self.i_rd, self.i_wr = _acc_memory(mm)
        self.v_rd, self.v_wr = self.v_mem.read_port(), self.v_mem.write_port()
        self.b_rd = self.b_mem.read_port()
        self.collision = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = up = self.engine
        m.submodules.v_mem, m.submodules.b_mem = self.v_mem, self.b_mem
        m.submodules.i_mem = self.i_mem
        wiring.connect(m, up.v_rd, self.v_rd)
        wiring.connect(m, up.b_rd, self.b_rd)
        wiring.connect(m, up.v_wr, self.v_wr)
        all_lanes = (1 << self.mm.lanes) - 1
        with m.If(up.i_wr.en):
            m.d.comb += [self.i_wr.addr.eq(up.i_wr.addr), self.i_wr.en.eq(all_lanes)]
        with m.If(up.issue):
            m.d.comb += [self.i_rd.addr.eq(up.i_rd.addr), self.i_rd.en.eq(up.i_rd.en)]
        with m.Else():
            m.d.comb += self.i_rd.en.eq(0)
        m.d.comb += up.i_lane.eq(self.i_rd.data[Mux(up.s1_valid, up.s1_lane, 0)])
        m.d.comb += self.collision.eq(_collides(self.v_rd, self.v_wr) |
                                      (_collides(self.i_rd, self.i_wr) if self.mm.rows > 1
                                       else 0))
        return m


@pytest.mark.parametrize("neurons, lanes, fifo, register_reads", [
    (7, 4, 8, False), (7, 4, 5, True), (9, 2, 0, False), (5, 1, 0, True), (3, 4, 4, False)])
def test_update_engine_matches_golden(base_seed, neurons, lanes, fifo, register_reads):
    """Three updates of random neurons under random parameters, with backpressure on the
    spikes when there is a queue: the spikes in order, the new V and the cleared I equal the
    golden model's, and ``done`` comes once the last spike has left."""
    seed = base_seed + neurons * lanes + fifo
    rng = np.random.default_rng(seed)
    shape = CoreShape(axons=4, neurons=neurons, w_bits=8, v_bits=12)
    mm = CoreMemoryMap(shape, lanes)
    bench = _UpdateBench(mm, fifo, register_reads)
    up = bench.engine
    acc_max = (1 << (shape.accumulator_bits - 1)) - 1

    async def testbench(ctx):
        for _ in range(3):
            config = NeuronConfig(int(rng.integers(1, 200)), int(rng.integers(0, 4)),
                                  ResetMode(int(rng.integers(0, 2))))
            v = rng.integers(shape.v_min, shape.v_max + 1, neurons)
            b = rng.integers(-100, 100, neurons)
            i = rng.integers(-acc_max, acc_max + 1, neurons)
            for n in range(neurons):
                ctx.set(bench.v_mem.data[n], int(v[n]))
                ctx.set(bench.b_mem.data[n], int(b[n]))
            padded = np.concatenate([i, np.zeros(mm.rows * lanes - neurons, np.int64)])
            for row in range(mm.rows):
                ctx.set(bench.i_mem.data[row], padded[row * lanes:(row + 1) * lanes].tolist())
            ctx.set(up.threshold, config.threshold)
            ctx.set(up.leak, config.leak)
            ctx.set(up.reset, config.reset)
            want_v, want_s = lif_update(v, i, b, config, shape.v_bits)

            ctx.set(up.start, 1)
            await ctx.tick()
            ctx.set(up.start, 0)
            ctx.set(up.run, 1)
            spikes, cycles = [], 0
            while not ctx.get(up.done):
                ready = (not fifo) or rng.random() < 0.5
                ctx.set(up.spikes.ready, ready)
                if ctx.get(up.spikes.valid) and ready:
                    spikes.append(ctx.get(up.spikes.payload.neuron))
                assert not ctx.get(bench.collision), f"seed {seed}"
                await ctx.tick()
                cycles += 1
                assert cycles < 50 * neurons, "the update never completes"
            assert not ctx.get(up.spikes.valid)
            ctx.set(up.run, 0)
            await ctx.tick()
            assert spikes == np.flatnonzero(want_s).tolist(), f"seed {seed}, {config}"
            assert [ctx.get(bench.v_mem.data[n]) for n in range(neurons)] == want_v.tolist()
            assert all(x == 0 for row in range(mm.rows) for x in ctx.get(bench.i_mem.data[row]))
            if not fifo:
                # One neuron per cycle, then the last one's way through the datapath.
                assert cycles == neurons + 1 + LIFDatapath.LATENCY + register_reads

    _simulate(bench, testbench)


# ---- the bus engine ----

@pytest.mark.parametrize("register_reads", [False, True])
@pytest.mark.parametrize("lanes", [1, 4])
def test_bus_engine_decodes_every_region(base_seed, lanes, register_reads):
    """Random requests in every region, in range and out of it, and in regions a core does
    not have, stepped as the core's state machine steps them: a write asks the right memory
    (or the register file) for the right word and lane, a synapse write a cycle later; a read
    returns the word of the request's region, sign-extended, or 0."""
    seed = base_seed + lanes + register_reads
    rng = np.random.default_rng(seed)
    shape = CoreShape(axons=5, neurons=6, w_bits=8, v_bits=16)
    mm = CoreMemoryMap(shape, lanes)
    dut = BusEngine(mm, register_reads=register_reads)
    lane_bits = lanes.bit_length() - 1
    core_regions = len(Region) - 2     # SYNAPSE ... REGISTER; the route tables are the tile's

    async def testbench(ctx):
        for _ in range(300):
            region = int(rng.integers(0, 8))
            size = mm.region_size(region) if region < core_regions else 1
            offset = int(rng.choice([rng.integers(0, size), rng.integers(0, 1 << mm.offset_bits)],
                                    p=[0.8, 0.2]))
            inside = region < core_regions and offset < size
            write = bool(rng.random() < 0.5)
            value = int(rng.integers(0, 1 << mm.data_bits))
            ctx.set(dut.req.as_value(), mm.request(region << mm.offset_bits | offset,
                                                   write=write, data=value))
            row = (offset >> lane_bits) % (1 << len(dut.row))
            assert (ctx.get(dut.row), ctx.get(dut.lane)) == (row, offset % lanes)
            await ctx.tick()      # IDLE: the request is checked (registered)
            if write:
                ctx.set(dut.access, 1)
                assert ctx.get(dut.in_synapse) == (inside and region == Region.SYNAPSE)
                assert ctx.get(dut.v_wr.en) == (inside and region == Region.MEMBRANE)
                assert ctx.get(dut.b_wr.en) == (inside and region == Region.BIAS)
                assert ctx.get(dut.i_wr.en) == (inside and region == Region.ACCUMULATOR)
                assert ctx.get(dut.reg_write) == (inside and region == Region.REGISTER)
                for port in (dut.v_wr, dut.b_wr):
                    assert ctx.get(port.addr) == offset % (1 << len(port.addr))
                    assert ctx.get(port.data) == to_signed(value, shape.v_bits)
                assert ctx.get(dut.i_wr.addr) == row
                assert not ctx.get(dut.syn_wr.en)
                await ctx.tick()
                ctx.set(dut.access, 0)
                # BUS_SYNAPSE: the write is carried out now.
                assert ctx.get(dut.syn_wr.en) == (inside and region == Region.SYNAPSE)
                assert ctx.get(dut.syn_wr.addr) == offset % (1 << len(dut.syn_wr.addr))
                assert ctx.get(dut.syn_wr.data.as_value()) == value % (1 << (8 * lanes))
                await ctx.tick()
                assert not ctx.get(dut.syn_wr.en)
                continue
            await ctx.tick()      # BUS_READ: the memories are read (by the core)
            words = {Region.SYNAPSE: int(rng.integers(0, 1 << (8 * lanes))),
                     Region.MEMBRANE: int(rng.integers(-(1 << 15), 1 << 15)),
                     Region.BIAS: int(rng.integers(-(1 << 15), 1 << 15)),
                     Region.ACCUMULATOR: int(rng.integers(-8, 8)),
                     Region.REGISTER: int(rng.integers(0, 1 << 32))}
            ctx.set(dut.syn_data.as_value(), words[Region.SYNAPSE])
            ctx.set(dut.v_data, words[Region.MEMBRANE])
            ctx.set(dut.b_data, words[Region.BIAS])
            ctx.set(dut.i_lane, words[Region.ACCUMULATOR])
            ctx.set(dut.reg_data, words[Region.REGISTER])
            if register_reads:
                ctx.set(dut.load, 1)
                await ctx.tick()
                ctx.set(dut.load, 0)
            ctx.set(dut.access, 1)
            for port in (dut.v_wr, dut.b_wr, dut.i_wr, dut.syn_wr):
                assert not ctx.get(port.en)
            assert not ctx.get(dut.reg_write)
            await ctx.tick()
            ctx.set(dut.access, 0)
            if not inside:
                want = 0
            elif region == Region.SYNAPSE:
                want = words[region]      # the raw word: P weights
            else:
                want = words[region] % (1 << mm.data_bits)
            assert ctx.get(dut.resp) == want, f"seed {seed}: {Region(region)!r} {offset}"

    _simulate(dut, testbench)
