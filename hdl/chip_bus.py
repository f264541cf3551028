"""The chip bus: the host's reads and writes of every tile's core and route tables.

The requests come from the host link (``Chip.bus``); :class:`ChipBus` takes one at a time, in
the mesh domain, and carries it out on the tile it names: a route-table entry on the tile's
route expander, anything else on the tile's core (through the tile's clock crossing).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .abi import CoreMemoryMap, Region
from .memory_map import MemoryBusSignature
from .tile import RouteExpander

__all__ = ["TABLE_PORTS", "chip_bus_signature", "TileBusSignature", "ChipBus"]

#: The route expander's table ports the chip bus drives (:class:`RouteExpander`'s members).
TABLE_PORTS = ("index_write", "dest_write", "index_read", "dest_read")


def chip_bus_signature(request_layout: data.StructLayout) -> wiring.Signature:
    """The chip bus, from the requester's side: requests (``request_layout``, see
    :func:`~spikefab.hdl.chip.chip_request_layout`) out, read answers (its ``data``) in."""
    return wiring.Signature({
        "req": Out(stream.Signature(request_layout)),
        "resp": In(stream.Signature(request_layout["data"].shape.width)),
    })


class TileBusSignature(wiring.Signature):
    """One tile as the chip bus sees it, from the bus's side.

    Parameters
    ----------
    memory_map : CoreMemoryMap
        The memory map of the tile's core.
    expander : RouteExpander
        The tile's route expander: its table ports, and the tables' sizes.

    Members
    -------
    core : Out(MemoryBusSignature(memory_map))
        The core's memory bus.
    index_write, dest_write, index_read, dest_read : Out(...)
        The route expander's table ports (:class:`RouteExpander`).
    drained : In(1)
        The tile's ingress queue is empty: every event queued for the core has entered it.
    """

    def __init__(self, memory_map: CoreMemoryMap, expander: RouteExpander):
        self.memory_map = memory_map
        self.neurons = expander.neurons
        self.destinations = expander.destinations
        super().__init__({
            "core": Out(MemoryBusSignature(memory_map)),
            **{name: Out(expander.signature.members[name].signature.flip())
               for name in TABLE_PORTS},
            "drained": In(1),
        })


class ChipBus(wiring.Component):
    """The chip bus's state machine: each request to its tile's route tables or core.

    A request is taken in ``IDLE``, its tile decoded one-hot (``selected``), and carried out
    in ``DISPATCH`` and after:

    * a route-table entry (``Region.ROUTE_INDEX``, ``ROUTE_DEST``) inside the table: a write
      at once, a read on the expander's read port (``ROUTE_READ``, until ``ack``), answered
      from a register (``ROUTE_RESP``);
    * any other region, at an offset the tile's core decodes: to the core (``CORE_CHECK``),
      once every event already in the tile's ingress queue has entered the core
      (``CORE_SEND``), so the request is ordered after them (the core finishes an event
      before its bus); a read then waits for the core's answer (``CORE_WAIT``);
    * anything else (no such tile, an entry past a table's end, an offset the core does not
      decode): a write is ignored, a read answers 0 (``IGNORE``), never wrapped onto an entry
      that exists.

    Registers: the request (``req``) and its tile, one-hot, decoded as the request is taken:
    what each state selects by is one bit, not a comparison of the tile number. A route
    read's answer (``route_data``), taken in the one cycle the expander's port acknowledges it
    and held until the host takes it; with ``register_answers``, a core's answer too, so that
    the tile multiplexer and the host link's byte multiplexer after it are not one long path.

    Parameters
    ----------
    request_layout : StructLayout
        :func:`~spikefab.hdl.chip.chip_request_layout`.
    tiles : list of TileBusSignature
        Every tile, in chip-bus order (the request's ``tile``: ``y * cols + x``).
    register_answers : bool
        Register a core's answer as a route read's is (``Chip.registered_reads``).

    Members
    -------
    bus : In(chip_bus_signature(request_layout))
        Requests and read answers.
    tile_0, tile_1, ... : Out(TileBusSignature)
        Tile ``k``'s core and route tables (:meth:`tile`).
    """

    def __init__(self, request_layout: data.StructLayout, tiles: list,
                 *, register_answers: bool = False):
        self.request_layout = request_layout
        self.tile_signatures = list(tiles)
        self.register_answers = bool(register_answers)
        super().__init__({
            "bus": In(chip_bus_signature(request_layout)),
            **{f"tile_{k}": Out(sig) for k, sig in enumerate(self.tile_signatures)},
        })

    def tile(self, k: int):
        """Tile ``k``'s interface (chip-bus order)."""
        return getattr(self, f"tile_{k}")

    def elaborate(self, platform):
        m = Module()
        tiles = [self.tile(k) for k in range(len(self.tile_signatures))]
        req = Signal(self.request_layout)
        # Every tile's core sees the request by wiring; only the selected one is offered it.
        core_addr_ok = Signal(len(tiles))  # the address fits the tile's core bus
        for k, (tile, sig) in enumerate(zip(tiles, self.tile_signatures)):
            core_req = tile.core.req.payload
            m.d.comb += [core_req.addr.region.eq(req.region),
                         core_req.addr.offset.eq(req.offset), core_req.write.eq(req.write),
                         core_req.data.eq(req.data)]
            m.d.comb += core_addr_ok[k].eq((req.offset >> sig.memory_map.offset_bits) == 0)

        # The request's tile, one-hot, decoded as the request is taken (none: no such tile):
        # what each state selects by, one bit, not a comparison of the tile number.
        selected = Signal(len(tiles))
        route_data = Signal(self.request_layout["data"].shape)  # a route read's answer
        # Chips whose cores register their reads (fast fabrics) register a core's answer here
        # too, as a route read's is (ROUTE_RESP): the host link's byte multiplexer follows it,
        # and the tile multiplexer before it would make one long path of the two.
        register_answers = self.register_answers
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.bus.req.ready.eq(1)
                with m.If(self.bus.req.valid):
                    m.d.sync += [req.eq(self.bus.req.payload),
                                 selected.eq(Cat(self.bus.req.payload.tile == k
                                                 for k in range(len(tiles))))]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(~selected.any()):
                    m.next = "IGNORE"
                with m.Else():
                    with m.Switch(req.region):
                        with m.Case(Region.ROUTE_INDEX, Region.ROUTE_DEST):
                            # Entries past a table's end are ignored (read 0), never wrapped.
                            m.next = "IGNORE"
                            for k, (tile, sig) in enumerate(zip(tiles, self.tile_signatures)):
                                limit = Mux(req.region == Region.ROUTE_INDEX,
                                            sig.neurons, sig.destinations)
                                with m.If(selected[k] & (req.offset < limit)):
                                    with m.If(~req.write):
                                        m.next = "ROUTE_READ"
                                    with m.Elif(req.region == Region.ROUTE_INDEX):
                                        m.d.comb += [
                                            tile.index_write.addr.eq(req.offset),
                                            tile.index_write.data.eq(req.data),
                                            tile.index_write.en.eq(1)]
                                    with m.Else():
                                        m.d.comb += [
                                            tile.dest_write.addr.eq(req.offset),
                                            tile.dest_write.data.eq(req.data),
                                            tile.dest_write.en.eq(1)]
                        with m.Default():
                            # The core's regions (and any the core does not decode, which it
                            # ignores). An offset the tile's core does not decode is ignored,
                            # never wrapped onto one it does.
                            m.next = "CORE_CHECK"
            with m.State("IGNORE"):  # route writes are done; reads of nothing give 0
                with m.If(req.write):
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.bus.resp.valid.eq(1), self.bus.resp.payload.eq(0)]
                    with m.If(self.bus.resp.ready):
                        m.next = "IDLE"
            with m.State("ROUTE_READ"):  # an in-range entry: wait for the expander's port
                for k, tile in enumerate(tiles):
                    for region, port in ((Region.ROUTE_INDEX, tile.index_read),
                                         (Region.ROUTE_DEST, tile.dest_read)):
                        with m.If(selected[k] & (req.region == region)):
                            m.d.comb += [port.addr.eq(req.offset), port.en.eq(1)]
                            with m.If(port.ack):
                                m.d.sync += route_data.eq(port.data.as_value())
                                m.next = "ROUTE_RESP"
            with m.State("ROUTE_RESP"):
                m.d.comb += [self.bus.resp.valid.eq(1), self.bus.resp.payload.eq(route_data)]
                with m.If(self.bus.resp.ready):
                    m.next = "IDLE"
            with m.State("CORE_CHECK"):
                with m.If((core_addr_ok & selected).any()):
                    m.next = "CORE_SEND"
                with m.Else():
                    m.next = "IGNORE"
            with m.State("CORE_SEND"):
                # After the events already queued for the core: the core finishes an event
                # before it serves its bus, so a read or write lands after every event that
                # reached the tile before the request.
                for k, tile in enumerate(tiles):
                    with m.If(selected[k] & tile.drained):
                        m.d.comb += tile.core.req.valid.eq(1)
                        with m.If(tile.core.req.ready):
                            with m.If(req.write):   # done: a write has no answer
                                m.next = "IDLE"
                            with m.Else():
                                m.next = "CORE_WAIT"
            with m.State("CORE_WAIT"):   # a read's answer
                for k, tile in enumerate(tiles):
                    with m.If(selected[k]):
                        if register_answers:
                            m.d.comb += tile.core.resp.ready.eq(1)
                            with m.If(tile.core.resp.valid):
                                m.d.sync += route_data.eq(tile.core.resp.payload)
                                m.next = "ROUTE_RESP"
                        else:
                            m.d.comb += [self.bus.resp.valid.eq(tile.core.resp.valid),
                                         self.bus.resp.payload.eq(tile.core.resp.payload),
                                         tile.core.resp.ready.eq(self.bus.resp.ready)]
                            with m.If(tile.core.resp.valid & self.bus.resp.ready):
                                m.next = "IDLE"
        return m
