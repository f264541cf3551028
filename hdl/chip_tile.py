"""One tile of the chip, assembled: the core, its queues and crossings, sequencer and expander.

The parts are in ``hdl/tile.py`` (:class:`IngressWriter`, :class:`CoreSequencer`,
:class:`RouteExpander`) and ``hdl/core.py``; :class:`ChipTile` puts them in their clock domains
and joins them with the queues between.
"""

from amaranth.hdl import DomainRenamer, Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import AsyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .abi import LUT_RAM, TICK_BITS, AERPacket, Clocking
from .chip_bus import TileBusSignature
from .core import LIFCore
from .tile import CoreSequencer, Egress, Ingress, IngressWriter, RouteExpander

__all__ = ["ChipTile"]


class ChipTile(wiring.Component):
    """A core and everything between it and its router's local port and the chip bus.

    In the mesh domain (``sync``): the :class:`IngressWriter` (the router's events and the TICK
    marker into the ingress queue) and the :class:`RouteExpander` (spikes out of the egress
    queue into routed packets). In the core's domain: the core and its :class:`CoreSequencer`.
    Between the two, the ingress and egress queues and the core bus's request and answer
    queues, each an ``AsyncFIFO`` (GALS) or, on one clock, a synchronous queue or none.

    Registers: none of its own; its queues are placed and sized by what the comments in
    :meth:`elaborate` say (the clock crossing's latency, an update's spikes, block RAM's read
    data).

    Parameters
    ----------
    x, y : int
        The tile's position.
    core : LIFCore
        The tile's core, not yet renamed into its domain.
    destinations : int
        Entries of the route expander's destination table.
    lut_ram : bool
        The route tables (:class:`RouteExpander`'s ``lut_ram``) and the egress queue in LUT
        RAM.
    domain : str
        The core's clock domain (``sync`` on one clock).
    clocking : Clocking
    registered_reads : bool
        The chip registers its block-RAM reads (``Chip.registered_reads``).
    test_hooks : bool
        Add ``rw_collision``.

    Members
    -------
    events : In(stream.Signature(AERPacket))
        EVENT packets the router delivers to this core.
    packets : Out(stream.Signature(AERPacket))
        The route expander's packets, to the router's local port.
    tick : In(1)
        One cycle: a TICK marker into the ingress queue, behind the events already taken.
    owed : Out(1)
        The marker is not yet written.
    arrived : Out(1)
        An event left the mesh into the ingress queue this cycle.
    stamp : In(TICK_BITS)
        The tick OUTPUT packets are stamped with.
    done : Out(1)
        One cycle per update: it has finished and every packet of it has been sent.
    bus : In(TileBusSignature)
        The chip bus's side of the tile (:attr:`bus_signature`).
    rw_collision : Out(1)
        With ``test_hooks``: :attr:`LIFCore.rw_collision`, in the core's domain.
    """

    @staticmethod
    def egress_depth(neurons: int) -> int:
        """Entries of the egress queue: every spike of an update and its DONE token (see
        :meth:`elaborate`)."""
        return neurons + 2

    def __init__(self, *, x: int, y: int, core: LIFCore, destinations: int, domain: str,
                 clocking: Clocking, registered_reads: bool = False, lut_ram: bool = False,
                 test_hooks: bool = False):
        self.position = (x, y)
        self.core = core
        self.domain = domain
        self.clocking = Clocking.cast(clocking, "clocking")
        self.registered_reads = bool(registered_reads)
        self.test_hooks = test_hooks
        self.lut_ram = bool(lut_ram)
        self.expander = RouteExpander(x=x, y=y, neurons=core.shape.neurons,
                                      destinations=destinations, lut_ram=lut_ram)
        self.bus_signature = TileBusSignature(core.memory_map, self.expander)
        hooks = {"rw_collision": Out(1)} if test_hooks else {}
        super().__init__({
            **hooks,
            "events": In(stream.Signature(AERPacket)),
            "packets": Out(stream.Signature(AERPacket)),
            "tick": In(1),
            "owed": Out(1),
            "arrived": Out(1),
            "stamp": In(TICK_BITS),
            "done": Out(1),
            "bus": In(self.bus_signature),
        })

    def _queue(self, *, width: int, depth: int, w_domain: str, r_domain: str,
               lut_ram: bool = False):
        """A queue between two domains: an ``AsyncFIFO``, or a synchronous one when single;
        with ``lut_ram``, its storage in LUT RAM."""
        if self.clocking == Clocking.SINGLE:
            queue = _in_lut_ram(SyncFIFOBuffered) if lut_ram else SyncFIFOBuffered
            return queue(width=width, depth=depth)
        queue = _in_lut_ram(AsyncFIFO) if lut_ram else AsyncFIFO
        return queue(width=width, depth=depth, w_domain=w_domain, r_domain=r_domain)

    def elaborate(self, platform):
        m = Module()
        x, y = self.position
        core, domain = self.core, self.domain
        # The core domains are left to the platform (or the simulator) to create, like sync:
        # each becomes a clock and a reset port of the top level.
        m.submodules[f"core_{x}_{y}"] = DomainRenamer(domain)(core)
        m.submodules[f"sequencer_{x}_{y}"] = seq = DomainRenamer(domain)(CoreSequencer())
        wiring.connect(m, seq.core_events, core.events)
        wiring.connect(m, seq.core_update, core.update)
        wiring.connect(m, core.spikes, seq.core_spikes)
        if self.test_hooks:
            m.d.comb += self.rw_collision.eq(core.rw_collision)

        # A clock crossing needs room for its synchronizers' latency; on one clock the core,
        # which takes an event every R cycles, needs little queue ahead of it.
        ingress = self._queue(width=Ingress.size,
                              depth=8 if self.clocking == Clocking.GALS else 2,
                              w_domain="sync", r_domain=domain)
        # Room for every spike of an update and its DONE token: an update can always finish,
        # whatever the mesh is doing, so that the core returns to taking events. Without it
        # core -> egress -> mesh -> ingress -> core is a cycle that can deadlock.
        egress = self._queue(width=Egress.size, depth=self.egress_depth(core.shape.neurons),
                             w_domain=domain, r_domain="sync", lut_ram=self.lut_ram)
        m.submodules[f"ingress_{x}_{y}"] = ingress
        m.submodules[f"egress_{x}_{y}"] = egress
        wiring.connect(m, ingress.r_stream, seq.ingress)
        wiring.connect(m, seq.egress, egress.w_stream)

        # The marker first, else the router's events for this core.
        m.submodules[f"ingress_writer_{x}_{y}"] = writer = IngressWriter()
        wiring.connect(m, wiring.flipped(self.events), writer.events)
        wiring.connect(m, writer.ingress, ingress.w_stream)
        m.d.comb += [writer.tick.eq(self.tick), self.owed.eq(writer.owed),
                     self.arrived.eq(writer.arrived)]

        m.submodules[f"expander_{x}_{y}"] = expander = self.expander
        if self.clocking == Clocking.SINGLE and self.registered_reads:
            # A register between the queue's block RAM and the expander, whose route-table
            # address the spike is: block RAM's read data comes late in the cycle.
            m.submodules[f"egress_stage_{x}_{y}"] = stage = SyncFIFOBuffered(
                width=Egress.size, depth=1)
            wiring.connect(m, egress.r_stream, stage.w_stream)
            egress = stage
        wiring.connect(m, egress.r_stream, expander.spikes)
        wiring.connect(m, expander.packets, wiring.flipped(self.packets))
        m.d.comb += [expander.tick.eq(self.stamp), self.done.eq(expander.done)]
        wiring.connect(m, wiring.flipped(self.bus.index_write), expander.index_write)
        wiring.connect(m, wiring.flipped(self.bus.dest_write), expander.dest_write)
        wiring.connect(m, wiring.flipped(self.bus.index_read), expander.index_read)
        wiring.connect(m, wiring.flipped(self.bus.dest_read), expander.dest_read)

        # The core's bus: across its clock domain through two AsyncFIFOs, or, on one
        # clock, straight to the core (its request and its answer are registers already).
        if self.clocking == Clocking.GALS:
            req_fifo = AsyncFIFO(width=core.memory_map.request_layout.size, depth=4,
                                 w_domain="sync", r_domain=domain)
            resp_fifo = AsyncFIFO(width=core.memory_map.data_bits, depth=4,
                                  w_domain=domain, r_domain="sync")
            m.submodules[f"bus_req_{x}_{y}"] = req_fifo
            m.submodules[f"bus_resp_{x}_{y}"] = resp_fifo
            wiring.connect(m, wiring.flipped(self.bus.core.req), req_fifo.w_stream)
            wiring.connect(m, req_fifo.r_stream, core.bus.req)
            wiring.connect(m, core.bus.resp, resp_fifo.w_stream)
            wiring.connect(m, resp_fifo.r_stream, wiring.flipped(self.bus.core.resp))
        else:
            wiring.connect(m, wiring.flipped(self.bus.core), core.bus)
        m.d.comb += self.bus.drained.eq(ingress.w_level == 0)
        return m


def _in_lut_ram(queue_class):
    """``queue_class`` (an ``amaranth.lib.fifo`` queue) with its storage in LUT RAM
    (:data:`LUT_RAM`), set on the memory the library's queues name ``storage``."""
    class InLUTRAM(queue_class):
        def elaborate(self, platform):
            m = super().elaborate(platform)
            m.submodules.storage.attrs.update(LUT_RAM)
            return m
    return InLUTRAM
