"""The LIF neuron core: synapse memory, accumulators, neuron state, one time-multiplexed datapath."""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from .abi import (AXON_BITS, COUNTER_BITS, COUNTERS, NEURON_BITS, REGISTERS, CoreMemoryMap,
                  CoreShape, MemoryStyle, Region, Register)
from .counter import Counter
from .lif import LIFDatapath
from .memory_map import MemoryBusSignature
from .synapse import SynapseMemory

__all__ = ["AxonEvent", "NeuronSpike", "Handshake", "LIFCore"]

#: What enters a core: one event for one axon. The field is wide enough for any core, so that
#: an event for an axon the core does not have can be seen, dropped and counted.
AxonEvent = data.StructLayout({"axon": unsigned(AXON_BITS)})
#: What leaves a core: the index of a neuron that spiked.
NeuronSpike = data.StructLayout({"neuron": unsigned(NEURON_BITS)})

LANE_CHOICES = (1, 2, 4, 8, 16)

#: The counters that ``dsp_counters`` puts in DSP blocks on an iCE40 (three per core: a
#: two-core UP5K chip has two DSP blocks left for the chip's tick count and the link's clock).
DSP_COUNTERS = (Register.EVENTS, Register.SOPS, Register.TICKS)

#: A command without payload whose transfer (``valid & ready``) marks its completion.
Handshake = wiring.Signature({"valid": Out(1), "ready": In(1)})


class LIFCore(wiring.Component):
    """A core of ``N`` LIF neurons with ``A`` axons (docs/semantics.md: delivery, update).

    **Events.** An accepted event for axon ``a < A`` reads the ``R = ceil(N / P)`` synapse words
    of row ``a``, ``P`` weights per cycle, and adds them into the accumulators ``I``: ``R``
    cycles per event when events come back to back (the next one is accepted with the last
    row). An event for ``a >= A``, or one beyond ``events_per_tick`` in a tick, is dropped and
    counted in one cycle and touches nothing.

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

    Parameters
    ----------
    shape : CoreShape
        ``A``, ``N``, ``w_bits``, ``v_bits``, ``events_per_tick``.
    lanes : int
        ``P``, weights read per cycle: 1, 2, 4, 8 or 16.
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
    dsp_counters : bool
        On an iCE40 platform, the counters of :data:`DSP_COUNTERS` are DSP blocks
        (:class:`~spikefab.hdl.counter.Counter`); the same counters otherwise.

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
                 register_reads: bool = False,
                 dsp_counters: bool = False):
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
        self.dsp_counters = bool(dsp_counters)
        self.memory_map = CoreMemoryMap(shape, lanes)
        super().__init__({
            "events": In(stream.Signature(AxonEvent)),
            "spikes": Out(stream.Signature(NeuronSpike)),
            "update": In(Handshake),
            "bus": In(MemoryBusSignature(self.memory_map)),
            "idle": Out(1),
            "rw_collision": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        shape, lanes, mm = self.shape, self.lanes, self.memory_map
        rows, n_neurons = mm.rows, shape.neurons
        lane_bits = exact_log2(lanes)
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
        m.submodules.membrane = v_mem = Memory(shape=signed(shape.v_bits), depth=n_neurons,
                                               init=[], attrs=no_rw_check)
        m.submodules.bias = b_mem = Memory(shape=signed(shape.v_bits), depth=n_neurons, init=[],
                                           attrs=no_rw_check)
        m.submodules.accumulator = i_mem = Memory(shape=acc_word, depth=rows, init=[],
                                                  attrs=no_rw_check if rows > 1 else None)
        v_wr, b_wr = v_mem.write_port(), b_mem.write_port()
        # One write enable per lane: the host writes one neuron's I without touching the others.
        i_wr = i_mem.write_port(granularity=1)
        all_lanes = (1 << lanes) - 1
        v_rd, b_rd = v_mem.read_port(), b_mem.read_port()
        # An I row is never read in the cycle its sum is written back, except when a row is the
        # whole word (R = 1): then the next event (or the update) reads the row being written,
        # and the port must be transparent. Otherwise the port is plain block RAM; a soft
        # bypass for transparency would cost a register and a multiplexer per bit. (With
        # register_reads, IDLE takes no bus request until the last sum is written; see below.)
        i_rd = i_mem.read_port(transparent_for=(i_wr,) if rows == 1 else ())
        for port in (v_rd, b_rd, i_rd):
            m.d.comb += port.en.eq(0)

        # Registers and counters, as the register table (REGISTERS) defines them: each parameter
        # exactly as wide as its range, starting at its reset value.
        params = {}
        for reg, spec in REGISTERS.items():
            if not spec.counter:
                lo, hi = spec.range_of(shape)
                # (RESET's signal is "reset_mode": "reset" is the domain's reset.)
                name = "reset_mode" if reg == Register.RESET else spec.name
                params[reg] = Signal(range(lo, hi + 1), init=spec.reset_of(shape), name=name)
        threshold, leak, reset_mode = (params[Register.THRESHOLD], params[Register.LEAK],
                                       params[Register.RESET])
        counters = {}
        for reg in COUNTERS:
            step = n_neurons if reg == Register.SOPS else 1   # a delivered event is N SOPs
            counters[reg] = counter = Counter(COUNTER_BITS, step_width=bits_for(step),
                                              dsp=self.dsp_counters and reg in DSP_COUNTERS)
            m.submodules[REGISTERS[reg].name] = counter
            m.d.comb += counter.step.eq(step)
        delivered = Signal(range(shape.events_per_tick + 1))  # in-range events this tick

        m.submodules.lif = lif = LIFDatapath(shape, input_register=self.register_reads)
        m.d.comb += [lif.threshold.eq(threshold), lif.leak.eq(leak), lif.reset.eq(reset_mode)]

        if self.spike_fifo_depth:
            m.submodules.spike_fifo = spike_fifo = SyncFIFOBuffered(width=8,
                                                                    depth=self.spike_fifo_depth)
            wiring.connect(m, wiring.flipped(self.spikes), spike_fifo.r_stream)
            spike_in, spikes_queued = spike_fifo.w_stream, spike_fifo.level
        else:
            spike_in, spikes_queued = self.spikes, C(0)

        # ---- event accumulation: a one-stage read-add-write pipeline over the rows ----
        ev_addr = Signal(range(max(mm.synapse_words, 2)))
        ev_row = Signal(range(max(rows, 2)))
        acc_valid = Signal()  # the synapse and I words of row acc_row arrive this cycle
        acc_row = Signal.like(ev_row)
        m.d.sync += acc_valid.eq(0)
        # With register_reads the EVENT state only reads the synapse word; a cycle later
        # (reg_valid) the word is registered and the I word of its row is read, and a cycle
        # after that both meet in the adders. Either way I is read one cycle before it is
        # written (see the I port above for why that never collides).
        reg_valid = Signal()
        reg_row = Signal.like(ev_row)
        addend = syn.r_data   # registered in the synapse memory with register_reads
        if self.register_reads:
            m.d.sync += reg_valid.eq(0)
            with m.If(reg_valid):
                m.d.comb += [i_rd.addr.eq(reg_row), i_rd.en.eq(1)]
                m.d.sync += [acc_valid.eq(1), acc_row.eq(reg_row)]
        with m.If(acc_valid):
            m.d.comb += [i_wr.addr.eq(acc_row), i_wr.en.eq(all_lanes)]
            for j in range(lanes):
                m.d.comb += i_wr.data[j].eq(i_rd.data[j] + addend[j])

        # ---- update walk ----
        up_n = Signal(range(n_neurons + 1))
        up_lane = Signal(range(lanes))
        up_row = Signal(range(max(rows, 2)))
        s1_valid = Signal()  # V, B and I of the next neuron arrive this cycle
        # Neurons leave the datapath in the order they enter it, 0 to N - 1: a count of those
        # that left names the one leaving (the datapath's own index pipeline, a register per
        # bit and stage, is left unused).
        out_n = Signal(8)
        s1_lane = Signal(range(lanes))
        s1_row = Signal.like(up_row)
        i_lane = Signal.like(i_rd.data[0])   # the lane of the I word that is wanted, see below
        m.d.sync += s1_valid.eq(0)
        # Credit check: an issued neuron always finds room in the spike queue, so the datapath
        # never has to stall. Count every neuron between issue and the queue.
        pipeline = Signal(range(lif.latency + 3))
        issue = Signal()
        retire = Signal()
        m.d.comb += retire.eq(lif.o_valid)
        with m.If(issue & ~retire):
            m.d.sync += pipeline.eq(pipeline + 1)
        with m.Elif(~issue & retire):
            m.d.sync += pipeline.eq(pipeline - 1)
        room = Signal()
        if self.spike_fifo_depth:
            m.d.comb += room.eq(spikes_queued + pipeline < self.spike_fifo_depth)
        else:
            m.d.comb += room.eq(1)

        m.d.comb += [
            lif.i_valid.eq(s1_valid),
            lif.i_index.eq(0),
            lif.i_v.eq(v_rd.data),
            lif.i_bias.eq(b_rd.data),
            lif.i_acc.eq(i_lane),
            spike_in.payload.eq(out_n),
            spike_in.valid.eq(lif.o_valid & lif.o_spike),
        ]
        with m.If(s1_valid & (s1_lane == 0)):
            # The row's I word is held in the read port from here on: clear it in memory.
            m.d.comb += [i_wr.addr.eq(s1_row), i_wr.en.eq(all_lanes), i_wr.data.eq(0)]
        with m.If(lif.o_valid):
            m.d.comb += [v_wr.addr.eq(out_n), v_wr.en.eq(1), v_wr.data.eq(lif.o_v)]
            m.d.sync += out_n.eq(out_n + 1)

        # ---- bus ----
        # The request is not copied: it is taken (``ready``) only once it has been carried
        # out, and a stream's payload holds until then (a copy is a flip-flop per bit of the
        # word, and the word is 64 bits in the UP5K's layer-1 core).
        req = self.bus.req.payload
        region, offset = req.addr.region, req.addr.offset
        in_region = Signal()
        m.d.comb += in_region.eq(
            ((region == Region.SYNAPSE) & (offset < mm.synapse_words)) |
            (((region == Region.MEMBRANE) | (region == Region.BIAS) |
              (region == Region.ACCUMULATOR)) & (offset < n_neurons)) |
            ((region == Region.REGISTER) & (offset < len(Register))))
        # Registered: BUS_ACCESS comes at least a cycle after ``req`` is taken, and the offset
        # comparisons are carry chains that would otherwise feed the memories' write enables.
        in_region_q = Signal()
        m.d.sync += in_region_q.eq(in_region)
        # So are the range checks of a parameter write (a value outside the register's range,
        # one the golden model would reject, is ignored): a 32-bit comparison would otherwise
        # feed the parameter's enable.
        param_ok = {}
        for reg in params:
            lo, hi = REGISTERS[reg].range_of(shape)
            param_ok[reg] = ok = Signal(name=f"{REGISTERS[reg].name}_ok")
            m.d.sync += ok.eq((req.data >= lo) & (req.data <= hi) if lo else req.data <= hi)
        req_lane = offset[:lane_bits] if lanes > 1 else C(0, 1)
        # One lane multiplexer on the I port for the datapath and the bus: a neuron is in the
        # datapath's first stage (s1_valid) only during an update, which no bus access overlaps.
        m.d.comb += i_lane.eq(i_rd.data[Mux(s1_valid, s1_lane, req_lane)])
        req_row = offset[lane_bits:]
        resp_data = Signal(mm.data_bits)
        m.d.comb += [self.bus.resp.payload.eq(resp_data)]
        # What a bus read of each memory returns: with register_reads, registered (BUS_WAIT).
        if self.register_reads:
            v_q, b_q = Signal.like(v_rd.data), Signal.like(b_rd.data)
            i_q = Signal.like(i_rd.data[0])
        else:
            v_q, b_q, i_q = v_rd.data, b_rd.data, i_lane

        registers = {**params, **{reg: counter.value for reg, counter in counters.items()}}

        # A synapse write happens in the cycle after BUS_ACCESS (BUS_SYNAPSE): its enable comes
        # from a register, not from the state decode, since it fans out to every block of a
        # large memory.
        syn_write = Signal()
        m.d.sync += syn_write.eq(0)
        with m.If(syn_write):
            m.d.comb += [syn.addr.eq(offset), syn.w_en.eq(1), syn.w_data.eq(req.data)]

        # ---- control ----
        take_event = Signal()
        event_ok = Signal()
        m.d.comb += event_ok.eq((self.events.payload.axon < shape.axons) &
                                (delivered < shape.events_per_tick))

        def accept_event():
            with m.If(self.events.payload.axon >= shape.axons):
                m.d.comb += counters[Register.DROP_RANGE].en.eq(1)
            with m.Elif(delivered >= shape.events_per_tick):
                m.d.comb += counters[Register.DROP_BUDGET].en.eq(1)
            with m.Else():
                m.d.sync += [
                    ev_addr.eq(self.events.payload.axon * rows),
                    ev_row.eq(0),
                    delivered.eq(delivered + 1),
                ]
                m.d.comb += [counters[Register.EVENTS].en.eq(1),
                             counters[Register.SOPS].en.eq(1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(~acc_valid & ~reg_valid)
                # With register_reads the last sum of an event is written two cycles after
                # EVENT; a bus read issued before that could read its row stale.
                bus_ok = ~acc_valid & ~reg_valid if self.register_reads else C(1)
                with m.If(self.update.valid):
                    m.d.sync += [up_n.eq(0), up_lane.eq(0), up_row.eq(0), out_n.eq(0)]
                    m.next = "UPDATE"
                with m.Elif(self.bus.req.valid & bus_ok):
                    # A write reads nothing: its checks (in_region_q and the value checks)
                    # were registered from the request in this cycle, so it is carried out
                    # in the next one.
                    with m.If(self.bus.req.payload.write):
                        m.next = "BUS_ACCESS"
                    with m.Else():
                        m.next = "BUS_READ"
                with m.Elif(self.events.valid):
                    m.d.comb += take_event.eq(1)
                    accept_event()
                    with m.If(event_ok):
                        m.next = "EVENT"

            with m.State("EVENT"):
                m.d.comb += [syn.addr.eq(ev_addr), syn.r_en.eq(1)]
                if self.register_reads:
                    m.d.sync += [reg_valid.eq(1), reg_row.eq(ev_row)]
                else:
                    m.d.comb += [i_rd.addr.eq(ev_row), i_rd.en.eq(1)]
                    m.d.sync += [acc_valid.eq(1), acc_row.eq(ev_row)]
                m.d.sync += [ev_addr.eq(ev_addr + 1), ev_row.eq(ev_row + 1)]
                with m.If(ev_row == rows - 1):
                    with m.If(self.events.valid & ~self.update.valid & ~self.bus.req.valid):
                        m.d.comb += take_event.eq(1)
                        accept_event()
                        with m.If(~event_ok):
                            m.next = "IDLE"
                    with m.Else():
                        m.next = "IDLE"

            with m.State("UPDATE"):
                with m.If(up_n < n_neurons):
                    with m.If(room):
                        m.d.comb += [
                            issue.eq(1),
                            v_rd.addr.eq(up_n), v_rd.en.eq(1),
                            b_rd.addr.eq(up_n), b_rd.en.eq(1),
                            i_rd.addr.eq(up_row), i_rd.en.eq(up_lane == 0),
                        ]
                        m.d.sync += [s1_valid.eq(1), s1_lane.eq(up_lane),
                                     s1_row.eq(up_row), up_n.eq(up_n + 1)]
                        with m.If(up_lane == lanes - 1):
                            m.d.sync += [up_lane.eq(0), up_row.eq(up_row + 1)]
                        with m.Else():
                            m.d.sync += up_lane.eq(up_lane + 1)
                with m.Elif((pipeline == 0) & (spikes_queued == 0) & ~s1_valid):
                    m.d.comb += self.update.ready.eq(1)
                    m.d.sync += delivered.eq(0)
                    m.d.comb += counters[Register.TICKS].en.eq(1)
                    m.next = "IDLE"

            with m.State("BUS_READ"):
                # Every memory is read at the request's address; the next state picks one.
                m.d.comb += [
                    syn.addr.eq(offset), syn.r_en.eq(region == Region.SYNAPSE),
                    v_rd.addr.eq(offset), v_rd.en.eq(1),
                    b_rd.addr.eq(offset), b_rd.en.eq(1),
                    i_rd.addr.eq(req_row), i_rd.en.eq(1),
                ]
                m.next = "BUS_WAIT" if self.register_reads else "BUS_ACCESS"

            with m.State("BUS_WAIT"):
                # The synapse word reaches its register; the others are registered here too
                # (block RAM's output is late: no region multiplexer right behind it).
                if self.register_reads:
                    m.d.sync += [v_q.eq(v_rd.data), b_q.eq(b_rd.data),
                                 i_q.eq(i_lane)]
                m.next = "BUS_ACCESS"

            with m.State("BUS_ACCESS"):
                with m.If(req.write):
                    m.d.comb += self.bus.req.ready.eq(~(in_region_q & (region == Region.SYNAPSE)))
                    with m.If(in_region_q):
                        with m.Switch(region):
                            with m.Case(Region.SYNAPSE):
                                m.d.sync += syn_write.eq(1)   # in the next cycle, see above
                            with m.Case(Region.MEMBRANE):
                                m.d.comb += [v_wr.addr.eq(offset), v_wr.en.eq(1),
                                             v_wr.data.eq(req.data)]
                            with m.Case(Region.BIAS):
                                m.d.comb += [b_wr.addr.eq(offset), b_wr.en.eq(1),
                                             b_wr.data.eq(req.data)]
                            with m.Case(Region.ACCUMULATOR):
                                # A write clears I (one lane of the row's word: its write
                                # enable alone). The word written to I is then a sum or
                                # zero, which the adder's own LUT gives (an I that could be
                                # loaded with any value would cost a LUT per bit of every
                                # lane).
                                m.d.comb += [i_wr.addr.eq(req_row),
                                             i_wr.en.eq(C(1, lanes) << req_lane)]
                            with m.Case(Region.REGISTER):
                                with m.Switch(offset):
                                    for reg, param in params.items():
                                        with m.Case(reg):
                                            with m.If(param_ok[reg]):
                                                m.d.sync += param.eq(req.data)
                                    # A write clears a counter (see Counter: a load
                                    # would cost a multiplexer per bit).
                                    for reg, counter in counters.items():
                                        with m.Case(reg):
                                            m.d.comb += counter.clear.eq(1)
                    with m.If(in_region_q & (region == Region.SYNAPSE)):
                        m.next = "BUS_SYNAPSE"
                    with m.Else():
                        m.next = "IDLE"
                with m.Else():
                    word = Signal(mm.data_bits)
                    with m.If(in_region_q):
                        with m.Switch(region):
                            with m.Case(Region.SYNAPSE):
                                m.d.comb += word.eq(addend)
                            with m.Case(Region.MEMBRANE):
                                m.d.comb += word.eq(v_q)
                            with m.Case(Region.BIAS):
                                m.d.comb += word.eq(b_q)
                            with m.Case(Region.ACCUMULATOR):
                                m.d.comb += word.eq(i_q)
                            with m.Case(Region.REGISTER):
                                for reg, sig in registers.items():
                                    with m.If(offset == reg):
                                        m.d.comb += word.eq(sig)
                    m.d.comb += self.bus.req.ready.eq(1)
                    m.d.sync += resp_data.eq(word)
                    m.next = "BUS_RESPOND"

            with m.State("BUS_SYNAPSE"):
                m.d.comb += self.bus.req.ready.eq(1)      # syn_write: the word is written now
                m.next = "IDLE"

            with m.State("BUS_RESPOND"):
                m.d.comb += self.bus.resp.valid.eq(1)
                with m.If(self.bus.resp.ready):
                    m.next = "IDLE"

        m.d.comb += self.events.ready.eq(take_event)

        def collision(rd, wr):
            return rd.en & wr.en.any() & (rd.addr == wr.addr)
        # The I port is transparent when R = 1, and a collision is then defined.
        m.d.comb += self.rw_collision.eq(collision(v_rd, v_wr) | collision(b_rd, b_wr)
                                         | (collision(i_rd, i_wr) if rows > 1 else 0))
        return m
