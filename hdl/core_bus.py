"""A core's bus engine: a memory bus request decoded into memory and register accesses."""

from amaranth.hdl import C, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .abi import COUNTER_BITS, CoreMemoryMap, Region, Register

__all__ = ["BusEngine"]


class BusEngine(wiring.Component):
    """Carries out one request of the core's memory bus (:mod:`spikefab.hdl.memory_map`).

    The core's state machine reads every memory at the request's address (BUS_READ: ``row``
    and ``lane`` say where the request lies in I) and drives the engine's steps: ``load``
    (BUS_WAIT, with ``register_reads`` only) registers what was read; ``access`` (BUS_ACCESS)
    carries out a write, or picks the word of the request's region and registers it as
    ``resp``. A write to the synapse memory is carried out in the cycle after ``access``
    (``syn_wr``), so ``in_synapse`` tells the state machine to wait a cycle. An offset outside
    its region, or a region the core does not have, is ignored by a write and reads 0. A
    write to I clears the neuron's lane (``i_wr`` has no data); one to a register goes to the
    register file (``reg_write``), which takes the offset and the value from the request
    itself.

    Registers: none for the request, which holds until it is taken. The region check
    (``in_region_q``), registered from the request in every cycle: ``access`` comes at least
    a cycle after the request is offered, and the offset comparisons are carry chains that
    would otherwise feed the memories' write enables. The synapse write's enable
    (``syn_write``): it fans out to every block of a large memory, so it comes from a
    register, not from the state decode. With ``register_reads``, the words read from V, B
    and I (``v_q``, ``b_q``, ``i_q``): block RAM's read data is late in the cycle, so no
    region multiplexer right behind it. The response (``resp``).

    Parameters
    ----------
    memory_map : CoreMemoryMap
        The core's regions, widths and ``P``.
    register_reads : bool
        Register what is read before picking the region's word (``load``).

    Members
    -------
    req : In(CoreMemoryMap.request_layout)
        The request; it must hold until the request is taken (one cycle after ``access``
        for a synapse write).
    load, access : In(1)
        The steps above.
    in_synapse : Out(1)
        The request is in the SYNAPSE region (registered check): its write takes a cycle more.
    resp : Out(data_bits)
        The word read, from the cycle after ``access``.
    row, lane : Out
        The request's row of I and lane in it (its offset, split).
    syn_data, v_data, b_data, i_lane, reg_data : In
        What the read returns: the synapse word, ``V`` and ``B`` at the offset, the lane
        ``lane`` of I's word (outside an update, the core's lane multiplexer carries it), the
        register at the offset.
    syn_wr, v_wr, b_wr : In(WritePort.Signature)
        Write requests to the synapse memory, V and B.
    i_wr : Out(Signature({"en": Out(1), "addr": Out(row bits)}))
        A write request to I: clear the lane ``lane`` of row ``addr``.
    reg_write : Out(1)
        Write the register at the request's offset.
    """

    def __init__(self, memory_map: CoreMemoryMap, *, register_reads: bool = False):
        self.memory_map = memory_map
        self.register_reads = bool(register_reads)
        mm, shape = memory_map, memory_map.shape
        syn_bits, neuron_bits, row_bits = (ceil_log2(mm.synapse_words), ceil_log2(shape.neurons),
                                           ceil_log2(mm.rows))
        syn_word = data.ArrayLayout(signed(shape.w_bits), mm.lanes)
        vb = signed(shape.v_bits)
        super().__init__({
            "req": In(mm.request_layout),
            "load": In(1),
            "access": In(1),
            "in_synapse": Out(1),
            "resp": Out(mm.data_bits),
            "row": Out(row_bits),
            "lane": Out(range(mm.lanes)),
            "syn_data": In(syn_word),
            "v_data": In(vb),
            "b_data": In(vb),
            "i_lane": In(signed(shape.accumulator_bits)),
            "reg_data": In(COUNTER_BITS),
            "syn_wr": In(WritePort.Signature(addr_width=syn_bits, shape=syn_word)),
            "v_wr": In(WritePort.Signature(addr_width=neuron_bits, shape=vb)),
            "b_wr": In(WritePort.Signature(addr_width=neuron_bits, shape=vb)),
            "i_wr": Out(wiring.Signature({"en": Out(1), "addr": Out(row_bits)})),
            "reg_write": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        mm = self.memory_map
        lanes, n_neurons = mm.lanes, mm.shape.neurons
        lane_bits = exact_log2(lanes)
        syn_wr, v_wr, b_wr, i_wr = self.syn_wr, self.v_wr, self.b_wr, self.i_wr
        req = self.req
        region, offset = req.addr.region, req.addr.offset
        in_region = Signal()
        m.d.comb += in_region.eq(
            ((region == Region.SYNAPSE) & (offset < mm.synapse_words)) |
            (((region == Region.MEMBRANE) | (region == Region.BIAS) |
              (region == Region.ACCUMULATOR)) & (offset < n_neurons)) |
            ((region == Region.REGISTER) & (offset < len(Register))))
        # Registered: BUS_ACCESS comes at least a cycle after ``req`` is taken, and the offset
        # comparisons are carry chains that would otherwise feed the memories' write enables.
        # (So are the range checks of a parameter write, in the register file.)
        in_region_q = Signal()
        m.d.sync += in_region_q.eq(in_region)
        m.d.comb += self.in_synapse.eq(in_region_q & (region == Region.SYNAPSE))
        req_lane = offset[:lane_bits] if lanes > 1 else C(0, 1)
        m.d.comb += [self.lane.eq(req_lane), self.row.eq(offset[lane_bits:])]
        # What a bus read of each memory returns: with register_reads, registered (BUS_WAIT).
        if self.register_reads:
            v_q, b_q = Signal.like(self.v_data), Signal.like(self.b_data)
            i_q = Signal.like(self.i_lane)
            with m.If(self.load):
                # The synapse word reaches its register; the others are registered here too
                # (block RAM's output is late: no region multiplexer right behind it).
                m.d.sync += [v_q.eq(self.v_data), b_q.eq(self.b_data), i_q.eq(self.i_lane)]
        else:
            v_q, b_q, i_q = self.v_data, self.b_data, self.i_lane

        # A synapse write happens in the cycle after BUS_ACCESS (BUS_SYNAPSE): its enable comes
        # from a register, not from the state decode, since it fans out to every block of a
        # large memory.
        syn_write = Signal()
        m.d.sync += syn_write.eq(0)
        # A request's address and data are driven in every cycle, and its ``en`` says when it
        # is made: the core selects by ``en``. Gated here too, each bit would pass two gates,
        # and a flow that synthesizes module by module (the ECP5's) keeps both.
        m.d.comb += [
            syn_wr.addr.eq(offset), syn_wr.data.eq(req.data), syn_wr.en.eq(syn_write),
            v_wr.addr.eq(offset), v_wr.data.eq(req.data),
            b_wr.addr.eq(offset), b_wr.data.eq(req.data),
            i_wr.addr.eq(self.row),
        ]

        with m.If(self.access):
            with m.If(req.write):
                with m.If(in_region_q):
                    with m.Switch(region):
                        with m.Case(Region.SYNAPSE):
                            m.d.sync += syn_write.eq(1)   # in the next cycle, see above
                        with m.Case(Region.MEMBRANE):
                            m.d.comb += v_wr.en.eq(1)
                        with m.Case(Region.BIAS):
                            m.d.comb += b_wr.en.eq(1)
                        with m.Case(Region.ACCUMULATOR):
                            # A write clears I (one lane of the row's word: its write
                            # enable alone). The word written to I is then a sum or
                            # zero, which the adder's own LUT gives (an I that could be
                            # loaded with any value would cost a LUT per bit of every
                            # lane): hence no data here.
                            m.d.comb += i_wr.en.eq(1)
                        with m.Case(Region.REGISTER):
                            m.d.comb += self.reg_write.eq(1)
            with m.Else():
                word = Signal(mm.data_bits)
                with m.If(in_region_q):
                    with m.Switch(region):
                        with m.Case(Region.SYNAPSE):
                            m.d.comb += word.eq(self.syn_data)
                        with m.Case(Region.MEMBRANE):
                            m.d.comb += word.eq(v_q)
                        with m.Case(Region.BIAS):
                            m.d.comb += word.eq(b_q)
                        with m.Case(Region.ACCUMULATOR):
                            m.d.comb += word.eq(i_q)
                        with m.Case(Region.REGISTER):
                            m.d.comb += word.eq(self.reg_data)
                m.d.sync += self.resp.eq(word)
        return m
