"""A core's update engine: the walk over its neurons through the LIF datapath, spikes out."""

from amaranth.hdl import C, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .abi import NEURON_BITS, CoreMemoryMap, ResetMode
from .lif import LIFDatapath

__all__ = ["NeuronSpike", "UpdateEngine"]

#: What leaves a core: the index of a neuron that spiked.
NeuronSpike = data.StructLayout({"neuron": unsigned(NEURON_BITS)})


class UpdateEngine(wiring.Component):
    """The end-of-tick update (docs/semantics.md: update): every neuron once through
    :class:`~spikefab.hdl.lif.LIFDatapath`, its new ``V`` written back, its spike sent.

    The core's state machine drives it: ``start`` (for one cycle) begins a walk, which then
    goes on in every cycle ``run`` is high. The walk issues neurons ``n = 0 ... N - 1``, one
    per cycle: it reads ``V[n]`` and ``B[n]``, and at the first lane of a row the I word of
    the row, which the read port then holds while the row's ``P`` lanes are consumed. A
    neuron is issued only when the spike queue is sure to have room for it (a credit check),
    so the datapath never stalls; backpressure on ``spikes`` only slows the walk. ``done`` is
    high, in a cycle of ``run``, once every neuron has been written back and every spike has
    left through ``spikes``.

    The I read port is shared with the bus, and so is the multiplexer that picks a lane of
    its word: the engine tells which lane it wants (``s1_lane``, while ``s1_valid``) and gets
    that lane's value on ``i_lane``.

    Registers: the walk's position (``up_n``, ``up_lane``, ``up_row``). The first stage
    (``s1_valid``, ``s1_lane``, ``s1_row``): block RAM answers in the next cycle, so the
    neuron read is kept for the cycle its V, B and I arrive and enter the datapath, and the
    row's I is cleared in memory then. The datapath's own stages (one adder each). The count
    of neurons that left the datapath (``out_n``), which names the one leaving, in place of
    the datapath's index pipeline (a register per bit and stage). The count of neurons
    between issue and the spike queue (``pipeline``), for the credit check. The spike queue.

    Parameters
    ----------
    memory_map : CoreMemoryMap
        The core's shape, ``P`` and ``R``.
    spike_fifo_depth, register_reads
        As :class:`LIFCore` takes them.

    Members
    -------
    start : In(1)
        Begin a walk at neuron 0 (the core's IDLE state taking an update: never with
        ``run``).
    run : In(1)
        Walk on (the core's UPDATE state).
    issue : Out(1)
        A neuron is issued: the reads of ``v_rd``, ``b_rd`` and ``i_rd`` are made now.
    done : Out(1)
        The update is complete.
    threshold, leak, reset : In
        The core's parameters, as :class:`~spikefab.hdl.lif.LIFDatapath` takes them.
    spikes : Out(stream.Signature(NeuronSpike))
        The spiking neurons, in increasing order.
    v_rd, b_rd : In(ReadPort.Signature)
        Reads of V and B at the walk's position.
    i_rd : Out(Signature({"en": Out(1), "addr": Out(row bits)}))
        The read of I at the walk's row (``en``: at the row's first lane); the word comes back
        through the lane multiplexer, as ``i_lane``.
    s1_valid : Out(1)
        V, B and I of the next neuron arrive in this cycle (the first stage).
    s1_lane : Out(range(P))
        The lane of the I word that ``i_lane`` must carry while ``s1_valid``.
    i_lane : In(signed(accumulator_bits))
        That lane.
    v_wr : In(WritePort.Signature)
        The new V of the neuron leaving the datapath.
    i_wr : Out(Signature({"en": Out(1), "addr": Out(row bits)}))
        Clear row ``addr`` of I, every lane.
    """

    def __init__(self, memory_map: CoreMemoryMap, *, spike_fifo_depth: int = 8,
                 register_reads: bool = False):
        self.memory_map = memory_map
        self.spike_fifo_depth = spike_fifo_depth
        self.register_reads = bool(register_reads)
        shape, lanes, rows = memory_map.shape, memory_map.lanes, memory_map.rows
        vb, neuron_bits, row_bits = shape.v_bits, ceil_log2(shape.neurons), ceil_log2(rows)
        super().__init__({
            "start": In(1),
            "run": In(1),
            "issue": Out(1),
            "done": Out(1),
            "threshold": In(vb - 1),
            "leak": In(range(vb)),
            "reset": In(ResetMode),
            "spikes": Out(stream.Signature(NeuronSpike)),
            "v_rd": In(ReadPort.Signature(addr_width=neuron_bits, shape=signed(vb))),
            "b_rd": In(ReadPort.Signature(addr_width=neuron_bits, shape=signed(vb))),
            "i_rd": Out(wiring.Signature({"en": Out(1), "addr": Out(row_bits)})),
            "s1_valid": Out(1),
            "s1_lane": Out(range(lanes)),
            "i_lane": In(signed(shape.accumulator_bits)),
            "v_wr": In(WritePort.Signature(addr_width=neuron_bits, shape=signed(vb))),
            "i_wr": Out(wiring.Signature({"en": Out(1), "addr": Out(row_bits)})),
        })

    def elaborate(self, platform):
        m = Module()
        mm = self.memory_map
        shape, lanes, rows, n_neurons = mm.shape, mm.lanes, mm.rows, mm.shape.neurons
        v_rd, b_rd, i_rd, v_wr, i_wr = self.v_rd, self.b_rd, self.i_rd, self.v_wr, self.i_wr

        m.submodules.lif = lif = LIFDatapath(shape, input_register=self.register_reads)
        m.d.comb += [lif.threshold.eq(self.threshold), lif.leak.eq(self.leak),
                     lif.reset.eq(self.reset)]

        if self.spike_fifo_depth:
            m.submodules.spike_fifo = spike_fifo = SyncFIFOBuffered(width=8,
                                                                    depth=self.spike_fifo_depth)
            wiring.connect(m, wiring.flipped(self.spikes), spike_fifo.r_stream)
            spike_in, spikes_queued = spike_fifo.w_stream, spike_fifo.level
        else:
            spike_in, spikes_queued = self.spikes, C(0)

        up_n = Signal(range(n_neurons + 1))
        up_lane = Signal(range(lanes))
        up_row = Signal(range(max(rows, 2)))
        s1_valid = self.s1_valid  # V, B and I of the next neuron arrive this cycle
        # Neurons leave the datapath in the order they enter it, 0 to N - 1: a count of those
        # that left names the one leaving (the datapath's own index pipeline, a register per
        # bit and stage, is left unused).
        out_n = Signal(8)
        s1_lane = self.s1_lane
        s1_row = Signal.like(up_row)
        m.d.sync += s1_valid.eq(0)
        # Credit check: an issued neuron always finds room in the spike queue, so the datapath
        # never has to stall. Count every neuron between issue and the queue.
        pipeline = Signal(range(lif.latency + 3))
        issue = self.issue
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
            lif.i_acc.eq(self.i_lane),
            spike_in.payload.eq(out_n),
            spike_in.valid.eq(lif.o_valid & lif.o_spike),
        ]
        # The requests: the reads of the neuron at the walk's position (``issue`` says when),
        # the clear of the row whose I word has arrived (the row's I word is held in the read
        # port from here on: clear it in memory), the new V of the neuron leaving the
        # datapath. Their addresses and data are driven in every cycle and the core selects
        # them: gated here too, each bit would pass two gates, and a flow that synthesizes
        # module by module (the ECP5's) keeps both.
        m.d.comb += [
            v_rd.addr.eq(up_n), v_rd.en.eq(issue),
            b_rd.addr.eq(up_n), b_rd.en.eq(issue),
            i_rd.addr.eq(up_row), i_rd.en.eq(up_lane == 0),
            i_wr.addr.eq(s1_row), i_wr.en.eq(s1_valid & (s1_lane == 0)),
            v_wr.addr.eq(out_n), v_wr.en.eq(lif.o_valid), v_wr.data.eq(lif.o_v),
        ]
        with m.If(lif.o_valid):
            m.d.sync += out_n.eq(out_n + 1)

        # ``start`` and ``run`` never come together (IDLE, UPDATE), so one If/Elif serves both.
        # The walk comes first: with the zeros of ``start`` at the top of the registers' next
        # values, yosys would make ``start`` their synchronous reset (the state decode on every
        # reset pin) rather than a part of their next value, as a single state machine has it.
        with m.If(self.run):
            with m.If(up_n < n_neurons):
                with m.If(room):
                    m.d.comb += issue.eq(1)
                    m.d.sync += [s1_valid.eq(1), s1_lane.eq(up_lane),
                                 s1_row.eq(up_row), up_n.eq(up_n + 1)]
                    with m.If(up_lane == lanes - 1):
                        m.d.sync += [up_lane.eq(0), up_row.eq(up_row + 1)]
                    with m.Else():
                        m.d.sync += up_lane.eq(up_lane + 1)
            with m.Elif((pipeline == 0) & (spikes_queued == 0) & ~s1_valid):
                m.d.comb += self.done.eq(1)
        with m.Elif(self.start):
            m.d.sync += [up_n.eq(0), up_lane.eq(0), up_row.eq(0), out_n.eq(0)]
        return m
