"""A mesh tile around a core: the clock-domain crossing, the tick marker, spike expansion.

The core runs in its own clock domain; everything else of the tile runs in the mesh domain.

* **Ingress** (mesh -> core, an ``AsyncFIFO``): the events the router delivers to this core and,
  in the same queue, the TICK marker the tick controller sends. The :class:`CoreSequencer` in
  the core's domain plays them in order: events into the core, a marker into an update. Since
  the marker travels behind every event of its tick, no event can be counted in the wrong tick,
  whatever the clock ratio.
* **Egress** (core -> mesh, an ``AsyncFIFO``): the spikes of an update, then a DONE token.
  The :class:`RouteExpander` turns every spike into its routed packets and, on DONE, tells the
  controller that this core's update has finished and all its packets have been sent.
"""

from amaranth.hdl import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .abi import (AERPacket, AXON_BITS, LUT_RAM, NEURON_BITS, ROUTE_INDEX_BITS, TICK_BITS,
                  PacketKind, RouteDest, RouteEntry)
from .core import AxonEvent, Handshake, NeuronSpike

__all__ = ["IngressKind", "EgressKind", "Ingress", "Egress",
           "IngressWriter", "CoreSequencer", "RouteExpander"]


class IngressKind(enum.IntEnum, shape=1):
    EVENT = 0
    TICK = 1


class EgressKind(enum.IntEnum, shape=1):
    SPIKE = 0
    DONE = 1


Ingress = data.StructLayout({"kind": IngressKind, "axon": unsigned(AXON_BITS)})
Egress = data.StructLayout({"kind": EgressKind, "neuron": unsigned(NEURON_BITS)})



class IngressWriter(wiring.Component):
    """In the mesh domain: the router's events for this core, and the TICK marker, into ingress.

    ``tick`` (one cycle) makes a marker owed; while it is owed, the marker is what is offered
    to the ingress queue and no router event is taken, so the marker lands behind every event
    taken before ``tick`` and ahead of every event taken after it.

    Members
    -------
    events : In(stream.Signature(AERPacket))
        EVENT packets the router delivers to this tile.
    tick : In(1)
    owed : Out(1)
    ingress : Out(stream.Signature(Ingress))
        To the ingress ``AsyncFIFO``'s write side.
    arrived : Out(1)
        An event left the mesh into the queue this cycle.
    """

    events: In(stream.Signature(AERPacket))
    tick: In(1)
    owed: Out(1)
    ingress: Out(stream.Signature(Ingress))
    arrived: Out(1)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.owed):
            m.d.comb += [self.ingress.payload.kind.eq(IngressKind.TICK),
                         self.ingress.valid.eq(1)]
            with m.If(self.ingress.ready):
                m.d.sync += self.owed.eq(0)
        with m.Else():
            m.d.comb += [self.ingress.payload.kind.eq(IngressKind.EVENT),
                         self.ingress.payload.axon.eq(self.events.payload.body.event.axon),
                         self.ingress.valid.eq(self.events.valid),
                         self.events.ready.eq(self.ingress.ready),
                         self.arrived.eq(self.events.valid & self.ingress.ready)]
        with m.If(self.tick):
            m.d.sync += self.owed.eq(1)
        return m


class CoreSequencer(wiring.Component):
    """In the core's domain: ingress into events and updates, spikes and DONE into egress."""

    ingress: In(stream.Signature(Ingress))
    egress: Out(stream.Signature(Egress))
    core_events: Out(stream.Signature(AxonEvent))
    core_update: Out(Handshake)
    core_spikes: In(stream.Signature(NeuronSpike))

    def elaborate(self, platform):
        m = Module()
        is_event = self.ingress.payload.kind == IngressKind.EVENT
        with m.FSM():
            with m.State("PLAY"):
                m.d.comb += [
                    self.core_events.payload.axon.eq(self.ingress.payload.axon),
                    self.core_events.valid.eq(self.ingress.valid & is_event),
                    self.ingress.ready.eq(Mux(is_event, self.core_events.ready, 1)),
                ]
                with m.If(self.ingress.valid & ~is_event):
                    m.next = "UPDATE"
            with m.State("UPDATE"):
                m.d.comb += [
                    self.core_update.valid.eq(1),
                    self.egress.payload.kind.eq(EgressKind.SPIKE),
                    self.egress.payload.neuron.eq(self.core_spikes.payload.neuron),
                    self.egress.valid.eq(self.core_spikes.valid),
                    self.core_spikes.ready.eq(self.egress.ready),
                ]
                with m.If(self.core_update.ready):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.egress.payload.kind.eq(EgressKind.DONE),
                             self.egress.valid.eq(1)]
                with m.If(self.egress.ready):
                    m.next = "PLAY"
        return m


class RouteExpander(wiring.Component):
    """In the mesh domain: every spike into its routed packets; DONE into ``done``.

    A spike of neuron ``n`` sends one EVENT packet per destination of ``n`` and, if
    ``to_host``, an OUTPUT packet stamped with this tile's position and ``tick``, the tick of
    the update whose spikes these are (the chip's count of started ticks less one: the next
    tick starts only after this update's DONE has been taken).
    One packet every two cycles (a table read, then the send).

    The chip bus reads the tables through the expander's own read ports (one per table, so
    each table stays one block RAM): the requester holds ``en`` and ``addr`` until ``ack``,
    which is high for one cycle with ``data`` (registered). A read is issued in the first cycle
    its port is free, acknowledged two cycles later, and takes priority where it can:

    * the index port is only used when ``IDLE`` takes a spike; a bus read takes it instead (the
      spike is taken one cycle later), so an index read is issued at once;
    * the destination port is used by ``READ`` (which then waits a cycle for the bus read) and
      holds the destination while ``SEND_EVENT`` offers it, so a destination read waits only
      while a packet is offered and not taken.

    Without read requests the expander behaves exactly as without the read interface; with
    them, spikes and packets are only delayed, never changed.

    With ``lut_ram``, both tables are LUT RAM (:data:`~spikefab.hdl.abi.LUT_RAM`).

    Members
    -------
    spikes : In(stream.Signature(Egress))
    packets : Out(stream.Signature(AERPacket))
    tick : In(TICK_BITS)
    done : Out(1)
        One cycle per DONE token: the update is finished and every packet has been sent.
    index_write, dest_write : In(...)
        Route-table write ports (``addr``, ``data``, ``en``).
    index_read, dest_read : In(...)
        Route-table read requests (``addr``, ``en``; ``data``, ``ack``).
    """

    @staticmethod
    def table_depths(neurons: int, destinations: int) -> tuple[int, int]:
        """Words of the index and destination tables (a memory has at least two)."""
        return max(neurons, 2), max(destinations, 2)

    def __init__(self, *, x: int, y: int, neurons: int, destinations: int,
                 lut_ram: bool = False):
        self.position = (x, y)
        self.neurons = neurons
        self.destinations = destinations
        self.lut_ram = bool(lut_ram)
        index_bits = ceil_log2(max(neurons, 2))
        dest_bits = ceil_log2(max(destinations, 2))
        super().__init__({
            "spikes": In(stream.Signature(Egress)),
            "packets": Out(stream.Signature(AERPacket)),
            "tick": In(TICK_BITS),
            "done": Out(1),
            "index_write": In(wiring.Signature({
                "addr": Out(index_bits), "data": Out(RouteEntry), "en": Out(1)})),
            "dest_write": In(wiring.Signature({
                "addr": Out(dest_bits), "data": Out(RouteDest), "en": Out(1)})),
            "index_read": In(wiring.Signature({
                "addr": Out(index_bits), "en": Out(1), "data": In(RouteEntry), "ack": In(1)})),
            "dest_read": In(wiring.Signature({
                "addr": Out(dest_bits), "en": Out(1), "data": In(RouteDest), "ack": In(1)})),
        })

    def elaborate(self, platform):
        m = Module()
        # Unloaded entries must read as "no route": SRAM here is block RAM with a zero init.
        # The tables are written by the chip bus, which the host link drives only between runs,
        # while no spike is being expanded; a read at the address being written is then never
        # used, so yosys is told to build no logic for that case (``no_rw_check``: a register
        # and a multiplexer per bit of the entry otherwise). A table written during a run
        # routes that run's spikes by whichever entry the timing gives, with or without it.
        index_depth, dests_depth = self.table_depths(self.neurons, self.destinations)
        attrs = {"no_rw_check": 1, **(LUT_RAM if self.lut_ram else {})}
        m.submodules.index = index = Memory(shape=RouteEntry, depth=index_depth,
                                            init=[], attrs=attrs)
        m.submodules.dests = dests = Memory(shape=RouteDest, depth=dests_depth,
                                            init=[], attrs=attrs)
        # With LUT RAM (a large ECP5 chip) the chip bus's requests, which come from across the
        # die, are registered here first, so that its decoded enables do not reach into the
        # tables' address and enable logic in the same cycle; a write then lands a cycle
        # later, and the bus's next request comes later still, so a read after a write sees
        # it. Block RAM registers its inputs itself, and the UP5K has no cells to spare.
        held = m.d.sync if self.lut_ram else m.d.comb
        iw, dw = index.write_port(), dests.write_port()
        for port, bus in ((iw, self.index_write), (dw, self.dest_write)):
            held += [port.addr.eq(bus.addr), port.data.eq(bus.data), port.en.eq(bus.en)]
        ir, dr = index.read_port(), dests.read_port()
        m.d.comb += [ir.en.eq(0), dr.en.eq(0)]

        # Bus reads of the tables. A request (registered with LUT RAM, as the writes are) is
        # issued in one cycle (``*_bus``: the port is the bus's); its data, on the port's
        # output in the next cycle (``*_pending``), is registered there and acknowledged in
        # the cycle after (block RAM's read data comes late in the cycle; the bus multiplexes
        # every table behind it). A request is not issued again while pending, in its
        # acknowledge cycle or the cycle after (when a registered request still shows the one
        # acknowledged), so each is served once.
        index_req = Signal.like(self.index_read.addr)
        dest_req = Signal.like(self.dest_read.addr)
        index_en, dest_en = Signal(), Signal()
        index_acked, dest_acked = Signal(), Signal()
        held += [index_req.eq(self.index_read.addr), index_en.eq(self.index_read.en),
                 dest_req.eq(self.dest_read.addr), dest_en.eq(self.dest_read.en)]
        m.d.sync += [index_acked.eq(self.index_read.ack), dest_acked.eq(self.dest_read.ack)]
        index_bus, dest_bus = Signal(), Signal()
        index_pending, dest_pending = Signal(), Signal()
        dest_held = Signal()  # the destination port holds data a send still needs
        m.d.comb += [index_bus.eq(index_en & ~index_pending & ~self.index_read.ack
                                  & ~index_acked),
                     dest_bus.eq(dest_en & ~dest_pending & ~self.dest_read.ack & ~dest_acked
                                 & ~dest_held)]
        m.d.sync += [index_pending.eq(index_bus), dest_pending.eq(dest_bus),
                     self.index_read.ack.eq(index_pending), self.dest_read.ack.eq(dest_pending)]
        with m.If(index_pending):
            m.d.sync += self.index_read.data.eq(ir.data)
        with m.If(dest_pending):
            m.d.sync += self.dest_read.data.eq(dr.data)
        with m.If(index_bus):
            m.d.comb += [ir.addr.eq(index_req), ir.en.eq(1)]
        with m.If(dest_bus):
            m.d.comb += [dr.addr.eq(dest_req), dr.en.eq(1)]

        tick = self.tick
        neuron = Signal(8)
        entry = Signal(RouteEntry)
        pointer = Signal(ROUTE_INDEX_BITS)
        remaining = Signal(ROUTE_INDEX_BITS + 1)
        out = self.packets
        x, y = self.position

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.spikes.ready.eq(~index_bus)
                with m.If(self.spikes.valid & ~index_bus):
                    with m.If(self.spikes.payload.kind == EgressKind.DONE):
                        m.d.comb += self.done.eq(1)
                    with m.Else():
                        m.d.comb += [ir.addr.eq(self.spikes.payload.neuron), ir.en.eq(1)]
                        m.d.sync += neuron.eq(self.spikes.payload.neuron)
                        m.next = "ENTRY"
            with m.State("ENTRY"):
                m.d.sync += [entry.eq(ir.data), pointer.eq(ir.data.start),
                             remaining.eq(ir.data.count)]
                m.next = "READ"
            with m.State("READ"):
                with m.If(remaining != 0):
                    with m.If(~dest_bus):  # else the port is the bus's: read next cycle
                        m.d.comb += [dr.addr.eq(pointer), dr.en.eq(1)]
                        m.d.sync += [pointer.eq(pointer + 1), remaining.eq(remaining - 1)]
                        m.next = "SEND_EVENT"
                with m.Elif(entry.to_host):
                    m.next = "SEND_OUTPUT"
                with m.Else():
                    m.next = "IDLE"
            with m.State("SEND_EVENT"):
                m.d.comb += [
                    dest_held.eq(1),
                    out.valid.eq(1),
                    out.payload.kind.eq(PacketKind.EVENT),
                    out.payload.x.eq(dr.data.x),
                    out.payload.y.eq(dr.data.y),
                    out.payload.body.event.axon.eq(dr.data.axon),
                ]
                with m.If(out.ready):
                    m.next = "READ"
            with m.State("SEND_OUTPUT"):
                m.d.comb += [
                    out.valid.eq(1),
                    out.payload.kind.eq(PacketKind.OUTPUT),
                    out.payload.x.eq(x),
                    out.payload.y.eq(y),
                    out.payload.body.output.neuron.eq(neuron),
                    out.payload.body.output.tick.eq(tick),
                ]
                with m.If(out.ready):
                    m.next = "IDLE"
        return m
