"""The LIF neuron core: synapse memory, accumulators, neuron state, a time-multiplexed datapath."""

from amaranth.hdl import C, Module, Mux, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .abi import LUT_RAM, CoreMemoryMap, CoreShape, MemoryStyle, Region, Register
from .core_bus import BusEngine
from .core_events import AxonEvent, EventEngine
from .core_registers import CoreRegisters
from .core_update import NeuronSpike, UpdateEngine
from .lif import LIFDatapath
from .memory_map import MemoryBusSignature
from .synapse import SynapseMemory

__all__ = ["AxonEvent", "NeuronSpike", "Handshake", "LIFCore"]

LANE_CHOICES = (1, 2, 4, 8, 16, 32)

#: The counters that ``dsp_counters`` puts in DSP blocks on an iCE40 (three per core: a
#: two-core UP5K chip has two DSP blocks left for the chip's tick count and the link's clock).
DSP_COUNTERS = (Register.EVENTS, Register.SOPS, Register.TICKS)

#: A command without payload whose transfer (``valid & ready``) marks its completion.
Handshake = wiring.Signature({"valid": Out(1), "ready": In(1)})


def _share(m, port, *requests):
    """Drive a memory ``port`` from ``(when, request)`` pairs: while ``when`` holds, the
    request's members that a unit drives (address, enable, data) drive the port's, and a later
    pair wins over an earlier one; every request sees what the port returns."""
    for when, request in requests:
        members = request.signature.members
        with m.If(when):
            m.d.comb += [getattr(port, name).eq(getattr(request, name))
                         for name, member in members.items() if member.flow == Out]
        m.d.comb += [getattr(request, name).eq(getattr(port, name))
                     for name, member in members.items() if member.flow == In]


def _collision(rd, wr):
    return rd.en & wr.en.any() & (rd.addr == wr.addr)


class LIFCore(wiring.Component):
    """A core of ``N`` LIF neurons with ``A`` axons (docs/semantics.md: delivery, update).

    **Events.** An accepted event for axon ``a < A`` reads the ``R = ceil(N / P)`` synapse words
    of row ``a``, ``P`` weights per cycle, and adds them into the accumulators ``I``: ``R``
    cycles per event when events come back to back (the next one is accepted with the last
    row). ``I`` wraps at ``accumulator_bits``, so its sums do not depend on arrival order (an
    event past ``events_per_tick`` in a tick is delivered and counted in ``OVER_BUDGET``). An
    event for ``a >= A`` is dropped and counted in one cycle and touches nothing.

    **Update.** A transfer on ``update`` starts the end-of-tick update and *completes* (``ready``
    high for one cycle) when every neuron has been updated and every spike has left through
    ``spikes``; so the handshake is the done signal. Neurons go through :class:`LIFDatapath`
    one per cycle; ``spikes`` carries the spiking neuron indices in increasing order and may be
    back-pressured freely. Events and bus requests wait while an update runs; an update waits
    for the event in progress. When several inputs are ready at once, ``update`` goes first,
    then ``bus``, then ``events``.

    **Bus.** Reads and writes of every memory and register, see
    :mod:`spikefab.hdl.memory_map`; requests are served between events (a read takes 3 cycles).
    A request is taken (``bus.req.ready``) when it has been carried out: its payload must hold
    until then, as a stream's does.

    **Structure.** The memories are here; the work is done by four units, which one state
    machine here runs (IDLE, EVENT, UPDATE, and the bus's states) and whose requests share each
    memory port: :class:`~spikefab.hdl.core_events.EventEngine` (events to sums in I),
    :class:`~spikefab.hdl.core_update.UpdateEngine` (the walk over the neurons, spikes out),
    :class:`~spikefab.hdl.core_bus.BusEngine` (a bus request to memory and register accesses)
    and :class:`~spikefab.hdl.core_registers.CoreRegisters` (parameters and counters).

    Parameters
    ----------
    shape : CoreShape
        ``A``, ``N``, ``w_bits``, ``v_bits``, ``events_per_tick``.
    lanes : int
        ``P``, weights read per cycle: 1, 2, 4, 8, 16 or 32.
    memory : MemoryStyle
        Where the synapses live (:class:`~spikefab.hdl.abi.MemoryStyle`, or its name).
    spike_fifo_depth : int
        Depth of the spike output queue; more than the datapath's latency (3, or 4 with
        ``register_reads``). 0 builds none: ``spikes`` then carries each spike in the one cycle
        it leaves the datapath, and its consumer must take it (``ready`` high during an
        update), as a chip on one clock does, whose egress queue has room for a whole update.
    register_reads : bool
        Register what block RAM reads before logic uses it: the synapse words before the
        adders and the bus (in :class:`SynapseMemory`, per bank of a deep memory, before the
        bank multiplexer), and a neuron's V, B and I before the LIF datapath. Block RAM's read
        data arrives late in the cycle (5.8 ns on the ECP5), so this is what lets a core run
        near 100 MHz there. Events still cost ``R`` cycles each; an update and a bus read take
        one more cycle.
    lut_ram : bool
        V, B and I in LUT RAM: block RAM kept for the synapses.
    dsp_counters : bool
        On an iCE40 platform, the counters of :data:`DSP_COUNTERS` are DSP blocks
        (:class:`~spikefab.hdl.counter.Counter`); the same counters otherwise.
    routed : bool
        Every event comes through a router, which drops those for an axon the core does not
        have (a chip's core): ``DROP_RANGE`` could never count, so it is not built and reads
        0, as it would.

    Members
    -------
    events : In(stream.Signature(AxonEvent))
    spikes : Out(stream.Signature(NeuronSpike))
    update : In(Handshake)
    bus : In(MemoryBusSignature)
    idle : Out(1)
        No event, update or bus request is in progress.
    rw_collision : Out(1)
        For test benches: high in a cycle where a memory is read at the address being written.
        The design never does that (block RAM's answer would be undefined, and the synthesis
        flows tell yosys so: ``spikefab.boards.synthesis.NO_RW_CHECK``); the RTL benches check
        it on every cycle. Nothing inside a chip uses it, so synthesis removes its logic.

    Raises
    ------
    TypeError, ValueError
        On a bad parameter; the message names it and shows its value.
    """

    def __init__(self, shape: CoreShape, *, lanes: int = 8,
                 memory: MemoryStyle = MemoryStyle.BLOCK, spike_fifo_depth: int = 8,
                 register_reads: bool = False, lut_ram: bool = False,
                 dsp_counters: bool = False, routed: bool = False):
        if not isinstance(shape, CoreShape):
            raise TypeError(f"shape must be a CoreShape, not {shape!r}")
        if lanes not in LANE_CHOICES:
            raise ValueError(f"lanes must be one of {LANE_CHOICES}, not {lanes!r}")
        memory = MemoryStyle.cast(memory, "memory")
        if (isinstance(spike_fifo_depth, bool) or not isinstance(spike_fifo_depth, int)
                or not (LIFDatapath.LATENCY + int(bool(register_reads)) < spike_fifo_depth <= 256
                        or spike_fifo_depth == 0)):
            raise ValueError(f"spike_fifo_depth must be 0 or an integer in "
                             f"[{LIFDatapath.LATENCY + int(bool(register_reads)) + 1}, 256], "
                             f"not {spike_fifo_depth!r}")
        self.shape = shape
        self.lanes = lanes
        self.memory_style = memory
        self.spike_fifo_depth = spike_fifo_depth
        self.register_reads = bool(register_reads)
        self.lut_ram = bool(lut_ram)
        self.dsp_counters = bool(dsp_counters)
        self.routed = bool(routed)
        self.memory_map = CoreMemoryMap(shape, lanes)
        super().__init__({
            "events": In(stream.Signature(AxonEvent)),
            "spikes": Out(stream.Signature(NeuronSpike)),
            "update": In(Handshake),
            "bus": In(MemoryBusSignature(self.memory_map)),
            "idle": Out(1),
            "rw_collision": Out(1),
        })

    def _memories(self, m):
        """Add the synapse memory, V, B and I to ``m``; return the synapse memory and the
        ``(read, write)`` ports of V, B and I."""
        shape, lanes, mm = self.shape, self.lanes, self.memory_map
        rows, n_neurons = mm.rows, shape.neurons
        acc_word = data.ArrayLayout(signed(shape.accumulator_bits), lanes)
        # Memories. V and B are N words; I is R words of P lanes so an event touches a row/cycle.
        m.submodules.synapses = syn = SynapseMemory(
            depth=mm.synapse_words, lanes=lanes, w_bits=shape.w_bits, style=self.memory_style,
            registered=self.register_reads)
        # No memory here is read at an address in the cycle it is written there (see the I
        # port below), so yosys is told not to build logic for that case (``no_rw_check``:
        # block RAM's own answer to it is undefined, and emulating "read the old value" costs a
        # register per bit of the word).
        no_rw_check = {"no_rw_check": 1}
        small = {**no_rw_check, **LUT_RAM} if self.lut_ram else no_rw_check
        m.submodules.membrane = v_mem = Memory(shape=signed(shape.v_bits), depth=n_neurons,
                                               init=[], attrs=small)
        m.submodules.bias = b_mem = Memory(shape=signed(shape.v_bits), depth=n_neurons, init=[],
                                           attrs=small)
        m.submodules.accumulator = i_mem = Memory(shape=acc_word, depth=rows, init=[],
                                                  attrs=small if rows > 1 else None)
        v_wr, b_wr = v_mem.write_port(), b_mem.write_port()
        # One write enable per lane: the host writes one neuron's I without touching the others.
        i_wr = i_mem.write_port(granularity=1)
        v_rd, b_rd = v_mem.read_port(), b_mem.read_port()
        # An I row is never read in the cycle its sum is written back, except when a row is the
        # whole word (R = 1): then the next event (or the update) reads the row being written,
        # and the port must be transparent. Otherwise the port is plain block RAM; a soft
        # bypass for transparency would cost a register and a multiplexer per bit. (With
        # register_reads, IDLE takes no bus request until the last sum is written; see
        # elaborate.)
        i_rd = i_mem.read_port(transparent_for=(i_wr,) if rows == 1 else ())
        return syn, (v_rd, v_wr), (b_rd, b_wr), (i_rd, i_wr)

    def elaborate(self, platform):
        m = Module()
        shape, lanes, mm = self.shape, self.lanes, self.memory_map
        rows = mm.rows
        all_lanes = (1 << lanes) - 1
        syn, (v_rd, v_wr), (b_rd, b_wr), (i_rd, i_wr) = self._memories(m)

        # The units, which the state machine below runs.
        m.submodules.registers = regs = CoreRegisters(
            shape, offset_bits=mm.offset_bits, data_bits=mm.data_bits,
            dsp_counters=DSP_COUNTERS if self.dsp_counters else (),
            absent=(Register.DROP_RANGE,) if self.routed else ())
        m.submodules.event_engine = ev = EventEngine(mm, register_reads=self.register_reads)
        m.submodules.update_engine = up = UpdateEngine(
            mm, spike_fifo_depth=self.spike_fifo_depth, register_reads=self.register_reads)
        m.submodules.bus_engine = bu = BusEngine(mm, register_reads=self.register_reads)
        wiring.connect(m, wiring.flipped(self.events), ev.events)
        wiring.connect(m, wiring.flipped(self.spikes), up.spikes)
        # The request is not copied: it is taken (``ready``) only once it has been carried
        # out, and a stream's payload holds until then (a copy is a flip-flop per bit of the
        # word, and the word is 64 bits in the UP5K's layer-1 core).
        req = self.bus.req.payload
        region, offset = req.addr.region, req.addr.offset
        m.d.comb += [
            bu.req.eq(req), regs.offset.eq(offset), regs.data.eq(req.data),
            regs.write.eq(bu.reg_write), bu.reg_data.eq(regs.r_data),
            self.bus.resp.payload.eq(bu.resp),
            up.threshold.eq(regs.threshold), up.leak.eq(regs.leak), up.reset.eq(regs.reset_mode),
            regs.count.events.eq(ev.delivered), regs.count.sops.eq(ev.delivered),
            regs.count.drop_range.eq(ev.dropped_range),
            regs.count.over_budget.eq(ev.over_budget),
            regs.count.ticks.eq(up.done), ev.new_tick.eq(up.done),
        ]

        # The memory ports, each shared by the units that use it: a unit's request drives a
        # port while it holds, and the bus's reads (BUS_READ, below) come last. No two hold in
        # one cycle; were they to, the later one would win.
        m.d.comb += [port.en.eq(0) for port in (v_rd, b_rd, i_rd)]
        with m.If(bu.syn_wr.en):
            m.d.comb += [syn.addr.eq(bu.syn_wr.addr), syn.w_en.eq(1),
                         syn.w_data.eq(bu.syn_wr.data)]
        with m.If(ev.syn_rd.en):
            m.d.comb += [syn.addr.eq(ev.syn_rd.addr), syn.r_en.eq(1)]
        _share(m, i_rd, (ev.i_rd.en, ev.i_rd), (up.issue, up.i_rd))
        _share(m, v_rd, (up.issue, up.v_rd))
        _share(m, b_rd, (up.issue, up.b_rd))
        # I is written by the event's sums and cleared by the update (a row) and the bus (a
        # lane: no data, the bus engine says why).
        with m.If(ev.i_wr.en):
            m.d.comb += [i_wr.addr.eq(ev.i_wr.addr), i_wr.en.eq(all_lanes),
                         i_wr.data.eq(ev.i_wr.data)]
        with m.If(up.i_wr.en):
            m.d.comb += [i_wr.addr.eq(up.i_wr.addr), i_wr.en.eq(all_lanes), i_wr.data.eq(0)]
        with m.If(bu.i_wr.en):
            m.d.comb += [i_wr.addr.eq(bu.i_wr.addr), i_wr.en.eq(C(1, lanes) << bu.lane)]
        _share(m, v_wr, (up.v_wr.en, up.v_wr), (bu.v_wr.en, bu.v_wr))
        _share(m, b_wr, (bu.b_wr.en, bu.b_wr))
        # One lane multiplexer on the I port for the datapath and the bus: a neuron is in the
        # datapath's first stage (s1_valid) only during an update, which no bus access overlaps.
        i_lane = i_rd.data[Mux(up.s1_valid, up.s1_lane, bu.lane)]
        m.d.comb += [ev.syn_rd.data.eq(syn.r_data), up.i_lane.eq(i_lane),
                     bu.syn_data.eq(syn.r_data), bu.v_data.eq(v_rd.data),
                     bu.b_data.eq(b_rd.data), bu.i_lane.eq(i_lane)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(ev.idle)
                # With register_reads the last sum of an event is written two cycles after
                # EVENT; a bus read issued before that could read its row stale.
                bus_ok = ev.idle if self.register_reads else C(1)
                with m.If(self.update.valid):
                    m.d.comb += up.start.eq(1)
                    m.next = "UPDATE"
                with m.Elif(self.bus.req.valid & bus_ok):
                    # A write reads nothing: its checks (the bus engine's region check and the
                    # register file's value checks) were registered from the request in this
                    # cycle, so it is carried out in the next one.
                    with m.If(req.write):
                        m.next = "BUS_ACCESS"
                    with m.Else():
                        m.next = "BUS_READ"
                with m.Elif(self.events.valid):
                    m.d.comb += ev.take.eq(1)
                    with m.If(ev.deliver):
                        m.next = "EVENT"

            with m.State("EVENT"):
                m.d.comb += ev.run.eq(1)
                with m.If(ev.last):
                    with m.If(self.events.valid & ~self.update.valid & ~self.bus.req.valid):
                        m.d.comb += ev.take.eq(1)
                        with m.If(~ev.deliver):
                            m.next = "IDLE"
                    with m.Else():
                        m.next = "IDLE"

            with m.State("UPDATE"):
                m.d.comb += up.run.eq(1)
                with m.If(up.done):
                    m.d.comb += self.update.ready.eq(1)
                    m.next = "IDLE"

            with m.State("BUS_READ"):
                # Every memory is read at the request's address; the next state picks one.
                m.d.comb += [
                    syn.addr.eq(offset), syn.r_en.eq(region == Region.SYNAPSE),
                    v_rd.addr.eq(offset), v_rd.en.eq(1),
                    b_rd.addr.eq(offset), b_rd.en.eq(1),
                    i_rd.addr.eq(bu.row), i_rd.en.eq(1),
                ]
                m.next = "BUS_WAIT" if self.register_reads else "BUS_ACCESS"

            with m.State("BUS_WAIT"):
                m.d.comb += bu.load.eq(1)
                m.next = "BUS_ACCESS"

            with m.State("BUS_ACCESS"):
                m.d.comb += bu.access.eq(1)
                with m.If(req.write):
                    m.d.comb += self.bus.req.ready.eq(~bu.in_synapse)
                    with m.If(bu.in_synapse):
                        m.next = "BUS_SYNAPSE"
                    with m.Else():
                        m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.bus.req.ready.eq(1)
                    m.next = "BUS_RESPOND"

            with m.State("BUS_SYNAPSE"):
                m.d.comb += self.bus.req.ready.eq(1)      # syn_wr: the word is written now
                m.next = "IDLE"

            with m.State("BUS_RESPOND"):
                m.d.comb += self.bus.resp.valid.eq(1)
                with m.If(self.bus.resp.ready):
                    m.next = "IDLE"

        # The I port is transparent when R = 1, and a collision is then defined.
        m.d.comb += self.rw_collision.eq(_collision(v_rd, v_wr) | _collision(b_rd, b_wr)
                                         | (_collision(i_rd, i_wr) if rows > 1 else 0))
        return m
