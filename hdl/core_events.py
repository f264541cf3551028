"""A core's event engine: events in, synapse rows read, added into the accumulators."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .abi import AXON_BITS, CoreMemoryMap

__all__ = ["AxonEvent", "EventEngine"]

#: What enters a core: one event for one axon. The field is wide enough for any core, so that
#: an event for an axon the core does not have can be seen, dropped and counted.
AxonEvent = data.StructLayout({"axon": unsigned(AXON_BITS)})


class EventEngine(wiring.Component):
    """Delivery of events (docs/semantics.md: delivery): the synapse row of each event's axon,
    ``P`` weights per cycle, added into the accumulators ``I``.

    The core's state machine drives it. ``take`` accepts the event offered on ``events`` (it
    is ``events.ready``). An event for an axon ``a < A`` is delivered: the engine loads the
    address of its row's first synapse word. An event for ``a >= A`` is dropped and only
    counted. ``deliver`` tells beforehand which it will be. The adders into I are
    ``accumulator_bits`` wide and wrap, so the sums do not depend on the events' order however
    many arrive; one past the tick's budget (``events_per_tick`` delivered since ``new_tick``)
    is also counted as ``over_budget``.

    In every cycle ``run`` is high the engine reads the next synapse word of the row and the
    accumulator row ``r`` its ``P`` weights go to; the sums are written back in the next
    cycle, or in the one after with ``register_reads``. ``last`` is high while the last word
    of the row is read: ``R = ceil(N / P)`` cycles of ``run`` per event, and the next event
    may be taken in the last one.

    Registers: the address of the next synapse word and its row (``ev_addr``, ``ev_row``),
    loaded when an event is taken, so the synapse memory's address comes from a register. The
    read-add-write pipeline: block RAM answers a read in the next cycle, so the row being
    read is kept (``acc_valid``, ``acc_row``) for the cycle its words arrive and its sums are
    written; I is thus read one cycle before it is written, at another row while an event
    reads several. With ``register_reads`` the synapse word passes a register first (in the
    synapse memory: block RAM's read data is late in the cycle), and the I row is read a
    cycle later (``reg_valid``, ``reg_row``) so that both words reach the adders together.
    The count of events delivered in the tick stops at the budget and tells the events past it.

    Parameters
    ----------
    memory_map : CoreMemoryMap
        The core's shape, ``P`` and ``R``.
    register_reads : bool
        The synapse memory registers its read data (:class:`LIFCore`'s ``register_reads``).

    Members
    -------
    events : In(stream.Signature(AxonEvent))
        ``ready`` is ``take``.
    take : In(1)
        Accept the event on ``events`` in this cycle: deliver it or drop it.
    deliver : Out(1)
        The event on ``events`` is in range: taking it delivers it.
    run : In(1)
        Read the next synapse word of the event being delivered (the core's EVENT state).
    last : Out(1)
        The word ``run`` reads is the last of the row.
    idle : Out(1)
        No sum is still to be written to I.
    new_tick : In(1)
        The tick is over: the budget starts again.
    delivered, dropped_range, over_budget : Out(1)
        In the cycle an event is taken: delivered (counts ``EVENTS`` and ``SOPS``), dropped
        for its axon (``DROP_RANGE``), delivered past the budget (``OVER_BUDGET``).
    syn_rd : In(ReadPort.Signature)
        Reads of the synapse memory (a :class:`~spikefab.hdl.synapse.SynapseMemory`):
        ``data`` is its ``r_data``.
    i_rd : In(ReadPort.Signature)
        Reads of I, a row of ``P`` lanes.
    i_wr : Out(Signature({"en": Out(1), "addr": Out(row bits), "data": Out(row layout)}))
        Writes of the sums into I, every lane of the row.
    """

    def __init__(self, memory_map: CoreMemoryMap, *, register_reads: bool = False):
        self.memory_map = memory_map
        self.register_reads = bool(register_reads)
        shape, mm = memory_map.shape, memory_map
        acc_word = data.ArrayLayout(signed(shape.accumulator_bits), mm.lanes)
        super().__init__({
            "events": In(stream.Signature(AxonEvent)),
            "take": In(1),
            "deliver": Out(1),
            "run": In(1),
            "last": Out(1),
            "idle": Out(1),
            "new_tick": In(1),
            "delivered": Out(1),
            "dropped_range": Out(1),
            "over_budget": Out(1),
            "syn_rd": In(ReadPort.Signature(
                addr_width=ceil_log2(mm.synapse_words),
                shape=data.ArrayLayout(signed(shape.w_bits), mm.lanes))),
            "i_rd": In(ReadPort.Signature(addr_width=ceil_log2(mm.rows), shape=acc_word)),
            "i_wr": Out(wiring.Signature({"en": Out(1), "addr": Out(ceil_log2(mm.rows)),
                                          "data": Out(acc_word)})),
        })

    def elaborate(self, platform):
        m = Module()
        mm = self.memory_map
        shape, rows, lanes = mm.shape, mm.rows, mm.lanes
        syn_rd, i_rd, i_wr = self.syn_rd, self.i_rd, self.i_wr
        delivered = Signal(range(shape.events_per_tick + 1))  # this tick's, up to the budget
        axon = self.events.payload.axon
        m.d.comb += [
            self.events.ready.eq(self.take),
            self.deliver.eq(axon < shape.axons),
        ]

        # ---- a one-stage read-add-write pipeline over the rows ----
        ev_addr = Signal(range(max(mm.synapse_words, 2)))
        ev_row = Signal(range(max(rows, 2)))
        acc_valid = Signal()  # the synapse and I words of row acc_row arrive this cycle
        acc_row = Signal.like(ev_row)
        m.d.sync += acc_valid.eq(0)
        # With register_reads a cycle of ``run`` only reads the synapse word; a cycle later
        # (reg_valid) the word is registered and the I word of its row is read, and a cycle
        # after that both meet in the adders. Either way I is read one cycle before it is
        # written (see the I port in LIFCore for why that never collides).
        reg_valid = Signal()
        reg_row = Signal.like(ev_row)
        addend = syn_rd.data   # registered in the synapse memory with register_reads
        if self.register_reads:
            m.d.sync += reg_valid.eq(0)
            m.d.comb += [i_rd.addr.eq(reg_row), i_rd.en.eq(reg_valid)]
            with m.If(reg_valid):
                m.d.sync += [acc_valid.eq(1), acc_row.eq(reg_row)]
        else:
            m.d.comb += [i_rd.addr.eq(ev_row), i_rd.en.eq(self.run)]
        # A request's address and data are driven in every cycle, and its ``en`` says when it
        # is made: the core selects by ``en``. Gated here too, each bit would pass two gates,
        # and a flow that synthesizes module by module (the ECP5's) keeps both.
        m.d.comb += [syn_rd.addr.eq(ev_addr), syn_rd.en.eq(self.run),
                     i_wr.addr.eq(acc_row), i_wr.en.eq(acc_valid)]
        for j in range(lanes):
            m.d.comb += i_wr.data[j].eq(i_rd.data[j] + addend[j])
        m.d.comb += [self.idle.eq(~acc_valid & ~reg_valid), self.last.eq(ev_row == rows - 1)]

        def accept_event():
            # The taken event is dropped and counted, or loads the address of its row.
            with m.If(self.take):
                with m.If(axon >= shape.axons):
                    m.d.comb += self.dropped_range.eq(1)
                with m.Else():
                    m.d.sync += [ev_addr.eq(axon * rows), ev_row.eq(0)]
                    m.d.comb += self.delivered.eq(1)
                    with m.If(delivered == shape.events_per_tick):
                        m.d.comb += self.over_budget.eq(1)
                    with m.Else():
                        m.d.sync += delivered.eq(delivered + 1)

        # accept_event in both branches, not once after them: each register's next value is
        # then one decision tree, whose hold path yosys sees and maps to the flip-flop's enable.
        with m.If(self.run):
            if self.register_reads:
                m.d.sync += [reg_valid.eq(1), reg_row.eq(ev_row)]
            else:
                m.d.sync += [acc_valid.eq(1), acc_row.eq(ev_row)]
            m.d.sync += [ev_addr.eq(ev_addr + 1), ev_row.eq(ev_row + 1)]
            accept_event()   # the next event, taken in the cycle that reads the last word
        with m.Else():
            accept_event()
        with m.If(self.new_tick):
            m.d.sync += delivered.eq(0)
        return m
