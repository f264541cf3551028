"""The chip: an R x C mesh of router nodes and cores, a host port, and the tick barrier.

Clock domains (GALS): routers, route expanders and the tick controller run in the mesh domain
(``sync``); the core of tile ``(x, y)`` runs in its own domain ``core_x_y`` (give it the mesh's
clock where no separate clock is wanted), and every crossing is an ``AsyncFIFO``. With
``clocking=Clocking.SINGLE`` (boards with one clock) the cores run in ``sync`` too and the
crossings are synchronous FIFOs: the same event queues in the same places, without the synchronizers
and gray-code pointers; the chip bus reaches each core directly (no queue).

**The tick barrier** (why it holds across any clock ratio; see docs/chip.md): the controller
counts, in the mesh domain, every packet that enters the mesh (host injections, spike
expansions) and every packet that leaves it (into a tile's ingress queue, to the host output, or
dropped by a router). The update of tick ``t`` starts when the host has finished injecting tick
``t`` (``tick.valid``), every core has reported DONE for tick ``t - 1`` (which its expander
only forwards after sending every packet of that update), and the count of packets in flight is
zero. It then sends a TICK marker into every tile's ingress queue; a tile's interface gives the
marker priority over router events, so the marker stands behind exactly the events of tick
``t`` in that queue, and the core's sequencer, reading the queue in order, updates after the
last of them, whatever its clock.
"""

from dataclasses import dataclass

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import AsyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .abi import (COORD_BITS, MESH_LIMIT, NEURON_LIMIT, TICK_BITS, AERPacket, Clocking,
                  CoreMemoryMap, CoreShape, MemoryStyle, Region, RouteDest, RouteEntry)
from .core import Handshake, LIFCore
from .counter import Counter
from .lif import LIFDatapath
from .router import Port, RouterNode
from .tile import CoreSequencer, Egress, Ingress, IngressWriter, RouteExpander

__all__ = ["TileConfig", "chip_request_layout", "Chip"]


@dataclass(frozen=True)
class TileConfig:
    """The core of one tile: its shape, lanes, synapse memory style, route-table capacity, and
    whether synapse words are registered (:class:`LIFCore`'s ``register_reads``)."""
    shape: CoreShape
    lanes: int = 8
    memory: MemoryStyle = MemoryStyle.BLOCK
    destinations: int = 64
    register_reads: bool = False

    def __post_init__(self):
        object.__setattr__(self, "memory", MemoryStyle.cast(self.memory, "memory"))


def chip_request_layout(tiles: dict) -> data.StructLayout:
    """The chip bus's request: ``tile`` (index ``y * cols + x``), ``region`` (a
    :class:`~spikefab.hdl.abi.Region`: the core's regions go to the core, the route tables to
    the tile's expander), ``offset`` in the region, ``write``, ``data``."""
    maps = [CoreMemoryMap(c.shape, c.lanes) for c in tiles.values()]
    offset_bits = max(max(mm.offset_bits for mm in maps),
                      ceil_log2(max(max(c.destinations for c in tiles.values()), NEURON_LIMIT)))
    data_bits = max(max(mm.data_bits for mm in maps), RouteEntry.size, RouteDest.size)
    return data.StructLayout({
        "tile": unsigned(2 * COORD_BITS), "region": Region, "offset": unsigned(offset_bits),
        "write": unsigned(1), "data": unsigned(data_bits)})


class Chip(wiring.Component):
    """A mesh of LIF cores.

    Parameters
    ----------
    cols, rows : int
    tiles : dict of (x, y) -> TileConfig
        A core on every tile.
    host : (int, int)
        The tile whose router has the host port.
    clocking : Clocking (or its name)
        Every core in its own clock domain (:meth:`domain`), or all on ``sync``.
    dsp_counters : bool
        On an iCE40 platform, the cores' event, synaptic-op and tick counters and the chip's
        tick count are DSP blocks (:class:`~spikefab.hdl.counter.Counter`): seven for a
        two-core chip.
    test_hooks : bool
        Add ``mesh_stall`` (one bit per router, ``y * cols + x``) to freeze routers at will, and
        ``rw_collision`` (one bit per core, in its domain: :attr:`LIFCore.rw_collision`).

    Members
    -------
    host_in : In(stream.Signature(AERPacket))
        EVENT packets from the host, for the current tick.
    host_out : Out(stream.Signature(AERPacket))
        OUTPUT packets: ``(x, y)`` of the core, neuron, tick.
    tick : In(Handshake)
        End of the host's injections for the current tick: the transfer completes when the
        tick's update has been started on every core.
    quiet : Out(1)
        No update running and no packet in flight: every output of the last update is out.
    bus : In(...)
        Chip-bus requests (:func:`chip_request_layout`: tile, region, offset, write, data) and
        read responses. A read of a route table returns the entry's bits, zero-extended; entries
        past a table's end (and tiles that do not exist) read 0 and ignore writes. Route reads share the
        expander's table read ports with spike expansion (see :class:`RouteExpander`). A core
        request waits until the events already in the tile's ingress queue have entered the
        core, so it is ordered after them (the core finishes an event before its bus).
    mesh_drops, ticks : Out(32)
    """

    def __init__(self, *, cols: int, rows: int, tiles: dict, host=(0, 0), fifo_depth: int = 2,
                 clocking: Clocking = Clocking.GALS, test_hooks: bool = False,
                 dsp_counters: bool = False):
        self.clocking = clocking = Clocking.cast(clocking, "clocking")
        if not (1 <= cols <= MESH_LIMIT and 1 <= rows <= MESH_LIMIT):
            raise ValueError(f"the mesh must be between 1 x 1 and 8 x 8, not {cols} x {rows}")
        want = {(x, y) for y in range(rows) for x in range(cols)}
        if set(tiles) != want:
            raise ValueError(f"tiles must configure exactly the tiles {sorted(want)}")
        if tuple(host) not in want:
            raise ValueError(f"host tile {host!r} is outside the mesh")
        self.cols, self.rows = cols, rows
        self.tiles = dict(tiles)
        self.host = tuple(host)
        self.fifo_depth = fifo_depth
        self.test_hooks = test_hooks
        self.dsp_counters = bool(dsp_counters)
        self.order = [(x, y) for y in range(rows) for x in range(cols)]
        # The egress queue behind a core has room for every spike of an update (and is empty
        # when one starts: the tick controller starts none before the last one's DONE left
        # it), so the core's own spike queue is never full for long: the smallest one its
        # datapath allows, and none on one clock, where the egress queue's ready is exact
        # (each place is 8 flip-flops and a multiplexer on the iCE40). Across a clock
        # crossing, the queue's view of its room lags, and the core keeps a queue.
        self.cores = {t: LIFCore(c.shape, lanes=c.lanes, memory=c.memory,
                                 register_reads=c.register_reads,
                                 spike_fifo_depth=0 if clocking == Clocking.SINGLE else
                                 LIFDatapath.LATENCY + int(c.register_reads) + 1,
                                 dsp_counters=self.dsp_counters)
                      for t, c in self.tiles.items()}
        self.request_layout = chip_request_layout(self.tiles)
        data_bits = self.request_layout["data"].shape.width
        hooks = ({"mesh_stall": In(cols * rows), "rw_collision": Out(cols * rows)}
                 if test_hooks else {})
        super().__init__({
            **hooks,
            "host_in": In(stream.Signature(AERPacket)),
            "host_out": Out(stream.Signature(AERPacket)),
            "tick": In(Handshake),
            "quiet": Out(1),
            "bus": In(wiring.Signature({
                "req": Out(stream.Signature(self.request_layout)),
                "resp": In(stream.Signature(data_bits)),
            })),
            "mesh_drops": Out(32),
            "ticks": Out(32),
        })

    @property
    def registered_reads(self) -> bool:
        """Some tile registers its block-RAM reads (``TileConfig.register_reads``, for fast
        fabrics such as the ECP5's): then the chip registers its own too (the egress queue's
        spikes, the cores' bus answers), and so does the host link (its output queue)."""
        return any(c.register_reads for c in self.tiles.values())

    @staticmethod
    def domain(tile) -> str:
        """The clock domain of a tile's core (a clock and a reset port of the top level)."""
        return f"core_{tile[0]}_{tile[1]}"

    @property
    def domains(self) -> list[str]:
        """The clock domains besides ``sync`` that the platform or simulator must provide."""
        return [] if self.clocking == Clocking.SINGLE else [self.domain(t) for t in self.order]

    def _queue(self, *, width: int, depth: int, w_domain: str, r_domain: str):
        """A queue between two domains: an ``AsyncFIFO``, or a synchronous one when single."""
        if self.clocking == Clocking.SINGLE:
            return SyncFIFOBuffered(width=width, depth=depth)
        return AsyncFIFO(width=width, depth=depth, w_domain=w_domain, r_domain=r_domain)

    def elaborate(self, platform):
        m = Module()
        axons = [[self.tiles[x, y].shape.axons for x in range(self.cols)]
                 for y in range(self.rows)]
        routers = {}
        for (x, y) in self.order:
            routers[x, y] = r = RouterNode(x=x, y=y, cols=self.cols, rows=self.rows,
                                           axons=axons, host=self.host,
                                           fifo_depth=self.fifo_depth,
                                           stall_hook=self.test_hooks, edge_ports=False)
            m.submodules[f"router_{x}_{y}"] = r
            if self.test_hooks:
                m.d.comb += r.stall.eq(self.mesh_stall[self.order.index((x, y))])
        # Mesh links. The routers have no ports on the mesh's edge (XY routing never sends
        # there).
        for (x, y), r in routers.items():
            for port, (dx, dy), back in ((Port.EAST, (1, 0), Port.WEST),
                                         (Port.SOUTH, (0, 1), Port.NORTH)):
                if (x + dx, y + dy) in routers:
                    other = routers[x + dx, y + dy]
                    wiring.connect(m, r.port(port).tx, other.port(back).rx)
                    wiring.connect(m, other.port(back).tx, r.port(port).rx)

        host_router = routers[self.host]
        if self.fifo_depth == 0:
            # Routers without queues: one place on the host's input all the same, so that the
            # host (the host link's state machine) sees a ready that is a register, not the
            # host router's routing decision on the packet it offers.
            m.submodules.host_in_stage = host_stage = SyncFIFOBuffered(width=AERPacket.size,
                                                                       depth=1)
            m.d.comb += [host_stage.w_data.eq(self.host_in.payload),
                         host_stage.w_en.eq(self.host_in.valid),
                         self.host_in.ready.eq(host_stage.w_rdy),
                         host_router.host.rx.payload.eq(host_stage.r_data),
                         host_router.host.rx.valid.eq(host_stage.r_rdy),
                         host_stage.r_en.eq(host_router.host.rx.ready)]
        else:
            wiring.connect(m, wiring.flipped(self.host_in), host_router.host.rx)
        if self.clocking == Clocking.GALS:
            m.submodules.host_out_fifo = out_fifo = SyncFIFOBuffered(width=AERPacket.size,
                                                                     depth=16)
            wiring.connect(m, host_router.host.tx, out_fifo.w_stream)
            m.d.comb += [self.host_out.payload.eq(out_fifo.r_data),
                         self.host_out.valid.eq(out_fifo.r_rdy),
                         out_fifo.r_en.eq(self.host_out.ready)]
        else:
            # On one clock the consumer is the host link, which takes an output every cycle,
            # and the router's output is a register already: no queue (each of its places
            # would be 31 flip-flops on the iCE40).
            wiring.connect(m, host_router.host.tx, wiring.flipped(self.host_out))

        # The tick that OUTPUT packets are stamped with: the update running is that of the
        # last tick started (``ticks`` counts them; see RouteExpander).
        stamp = Signal(TICK_BITS)
        produced, consumed = [], []
        produced.append(self.host_in.valid & self.host_in.ready)
        consumed.append(host_router.host.tx.valid & host_router.host.tx.ready)
        drops_now = Signal(range(7 * len(routers) + 1))
        m.d.comb += drops_now.eq(sum(r.dropped for r in routers.values()))
        consumed.append(drops_now)

        send_tick = Signal()          # one cycle: markers into every ingress queue
        pending = Signal(len(self.order))  # cores whose update has not reported DONE
        marker_owed = Signal(len(self.order))  # markers not yet written
        dones = []

        # Bus plumbing state.
        expanders = {}
        core_addr_ok = Signal(len(self.order))  # the address fits the tile's core bus
        ingress_drained = Signal(len(self.order))  # every queued event has entered the core
        req = Signal(self.request_layout)
        core_req_valid = Signal(len(self.order))   # a request offered to tile k's core
        core_req_ready = Signal(len(self.order))
        core_resp_valid = Signal(len(self.order))
        core_resp_ready = Signal(len(self.order))
        core_resp_data = []

        for k, tile in enumerate(self.order):
            x, y = tile
            config, core = self.tiles[tile], self.cores[tile]
            domain = self.domain(tile) if self.clocking == Clocking.GALS else "sync"
            router = routers[tile]
            # The core domains are left to the platform (or the simulator) to create, like sync:
            # each becomes a clock and a reset port of the top level.
            m.submodules[f"core_{x}_{y}"] = DomainRenamer(domain)(core)
            m.submodules[f"sequencer_{x}_{y}"] = seq = DomainRenamer(domain)(CoreSequencer())
            wiring.connect(m, seq.core_events, core.events)
            wiring.connect(m, seq.core_update, core.update)
            wiring.connect(m, core.spikes, seq.core_spikes)
            if self.test_hooks:
                m.d.comb += self.rw_collision[k].eq(core.rw_collision)

            # A clock crossing needs room for its synchronizers' latency; on one clock the core,
            # which takes an event every R cycles, needs little queue ahead of it.
            ingress = self._queue(width=Ingress.size,
                                  depth=8 if self.clocking == Clocking.GALS else 2,
                                  w_domain="sync", r_domain=domain)
            # Room for every spike of an update and its DONE token: an update can always finish,
            # whatever the mesh is doing, so that the core returns to taking events. Without it
            # core -> egress -> mesh -> ingress -> core is a cycle that can deadlock.
            egress = self._queue(width=Egress.size, depth=config.shape.neurons + 2,
                                 w_domain=domain, r_domain="sync")
            m.submodules[f"ingress_{x}_{y}"] = ingress
            m.submodules[f"egress_{x}_{y}"] = egress
            m.d.comb += [seq.ingress.payload.eq(ingress.r_data),
                         seq.ingress.valid.eq(ingress.r_rdy),
                         ingress.r_en.eq(seq.ingress.ready),
                         egress.w_data.eq(seq.egress.payload),
                         egress.w_en.eq(seq.egress.valid),
                         seq.egress.ready.eq(egress.w_rdy)]

            # The marker first, else the router's events for this core.
            m.submodules[f"ingress_writer_{x}_{y}"] = writer = IngressWriter()
            wiring.connect(m, router.local.tx, writer.events)
            m.d.comb += [ingress.w_data.eq(writer.ingress.payload),
                         ingress.w_en.eq(writer.ingress.valid),
                         writer.ingress.ready.eq(ingress.w_rdy),
                         writer.tick.eq(send_tick),
                         marker_owed[k].eq(writer.owed)]
            consumed.append(writer.arrived)

            m.submodules[f"expander_{x}_{y}"] = expander = RouteExpander(
                x=x, y=y, neurons=config.shape.neurons, destinations=config.destinations)
            if self.clocking == Clocking.SINGLE and self.registered_reads:
                # A register between the queue's block RAM and the expander, whose route-table
                # address the spike is: block RAM's read data comes late in the cycle.
                m.submodules[f"egress_stage_{x}_{y}"] = stage = SyncFIFOBuffered(
                    width=Egress.size, depth=1)
                m.d.comb += [stage.w_data.eq(egress.r_data), stage.w_en.eq(egress.r_rdy),
                             egress.r_en.eq(stage.w_rdy)]
                egress = stage
            m.d.comb += [expander.spikes.payload.eq(egress.r_data),
                         expander.spikes.valid.eq(egress.r_rdy),
                         egress.r_en.eq(expander.spikes.ready)]
            wiring.connect(m, expander.packets, router.local.rx)
            m.d.comb += expander.tick.eq(stamp)
            produced.append(expander.packets.valid & expander.packets.ready)
            dones.append(expander.done)

            # The core's bus: across its clock domain through two AsyncFIFOs, or, on one
            # clock, straight to the core (its request and its answer are registers already).
            core_req = Signal(core.memory_map.request_layout)
            m.d.comb += [core_req.addr.region.eq(req.region),
                         core_req.addr.offset.eq(req.offset), core_req.write.eq(req.write),
                         core_req.data.eq(req.data)]
            if self.clocking == Clocking.GALS:
                req_fifo = AsyncFIFO(width=core.memory_map.request_layout.size, depth=4,
                                     w_domain="sync", r_domain=domain)
                resp_fifo = AsyncFIFO(width=core.memory_map.data_bits, depth=4,
                                      w_domain=domain, r_domain="sync")
                m.submodules[f"bus_req_{x}_{y}"] = req_fifo
                m.submodules[f"bus_resp_{x}_{y}"] = resp_fifo
                m.d.comb += [req_fifo.w_data.eq(core_req), req_fifo.w_en.eq(core_req_valid[k]),
                             core.bus.req.payload.eq(req_fifo.r_data),
                             core.bus.req.valid.eq(req_fifo.r_rdy),
                             req_fifo.r_en.eq(core.bus.req.ready),
                             resp_fifo.w_data.eq(core.bus.resp.payload),
                             resp_fifo.w_en.eq(core.bus.resp.valid),
                             core.bus.resp.ready.eq(resp_fifo.w_rdy),
                             resp_fifo.r_en.eq(core_resp_ready[k]),
                             core_req_ready[k].eq(req_fifo.w_rdy),
                             core_resp_valid[k].eq(resp_fifo.r_rdy)]
                core_resp_data.append(resp_fifo.r_data)
            else:
                m.d.comb += [core.bus.req.payload.eq(core_req),
                             core.bus.req.valid.eq(core_req_valid[k]),
                             core.bus.resp.ready.eq(core_resp_ready[k]),
                             core_req_ready[k].eq(core.bus.req.ready),
                             core_resp_valid[k].eq(core.bus.resp.valid)]
                core_resp_data.append(core.bus.resp.payload)
            m.d.comb += core_addr_ok[k].eq((req.offset >> core.memory_map.offset_bits) == 0)
            m.d.comb += ingress_drained[k].eq(ingress.w_level == 0)
            expanders[tile] = expander

        # ---- the tick controller ----
        # At most every place a packet can wait in (a router's input queues and output
        # registers, the host's input stage) holds one: in flight is never more.
        places = sum(len(r.ports) * (self.fifo_depth + 1) for r in routers.values()) + 1
        in_flight = Signal(range(places + 1))
        # Every packet entering or leaving this cycle is first registered, then added: the
        # drops and the host's injections come from the routers' routing decisions, which on
        # a chip without router queues follow their senders' registers in the same cycle.
        # While a registered term is not zero the chip is not quiet. The change is summed in a
        # few bits, then one 16-bit adder (each term added to the count would be one).
        produced_q = [Signal.like(Value.cast(t), name=f"produced_{i}")
                      for i, t in enumerate(produced)]
        consumed_q = [Signal.like(Value.cast(t), name=f"consumed_{i}")
                      for i, t in enumerate(consumed)]
        m.d.sync += [q.eq(t) for q, t in zip(produced_q + consumed_q, produced + consumed)]
        change = Signal(signed(bits_for(len(produced)) + 1 + bits_for(7 * len(routers)
                                                                      + len(consumed))))
        m.d.comb += change.eq(sum(produced_q) - sum(consumed_q))
        m.d.sync += in_flight.eq(in_flight + change)
        settled = Signal()
        m.d.comb += settled.eq(~Cat(produced_q + consumed_q).any())
        m.submodules.ticks = ticks = Counter(32, dsp=self.dsp_counters)
        m.submodules.mesh_drops = mesh_drops = Counter(32, step_width=len(drops_now))
        drops_q = next(q for q, t in zip(consumed_q, consumed) if t is drops_now)
        m.d.comb += [ticks.step.eq(1), mesh_drops.step.eq(drops_q),
                     mesh_drops.en.eq(1),
                     self.ticks.eq(ticks.value), self.mesh_drops.eq(mesh_drops.value)]
        # Registered: the count comes from a DSP block on the iCE40, and the stamp goes into
        # a packet the router decides on in the same cycle. A tick's first spike comes many
        # cycles after the tick started, so the stamp is always the new one.
        m.d.sync += stamp.eq(ticks.value - 1)
        done_now = Cat(dones)
        m.d.comb += self.quiet.eq((pending == 0) & (marker_owed == 0) & (in_flight == 0)
                                  & settled)
        with m.If(self.tick.valid & self.quiet):
            m.d.comb += [self.tick.ready.eq(1), send_tick.eq(1)]
            m.d.sync += pending.eq(~0)
            m.d.comb += ticks.en.eq(1)
        with m.Else():
            m.d.sync += pending.eq(pending & ~done_now)

        # ---- the chip bus ----
        # The request's tile, one-hot, decoded as the request is taken (none: no such tile):
        # what each state selects by, one bit, not a comparison of the tile number.
        selected = Signal(len(self.order))
        route_data = Signal(self.request_layout["data"].shape)  # a route read's answer
        # Chips whose cores register their reads (fast fabrics) register a core's answer here
        # too, as a route read's is (ROUTE_RESP): the host link's byte multiplexer follows it,
        # and the tile multiplexer before it would make one long path of the two.
        register_answers = self.registered_reads
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.bus.req.ready.eq(1)
                with m.If(self.bus.req.valid):
                    m.d.sync += [req.eq(self.bus.req.payload),
                                 selected.eq(Cat(self.bus.req.payload.tile == k
                                                 for k in range(len(self.order))))]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(~selected.any()):
                    m.next = "IGNORE"
                with m.Else():
                    with m.Switch(req.region):
                        with m.Case(Region.ROUTE_INDEX, Region.ROUTE_DEST):
                            # Entries past a table's end are ignored (read 0), never wrapped.
                            m.next = "IGNORE"
                            for k, tile in enumerate(self.order):
                                expander = expanders[tile]
                                limit = Mux(req.region == Region.ROUTE_INDEX,
                                            self.tiles[tile].shape.neurons,
                                            self.tiles[tile].destinations)
                                with m.If(selected[k] & (req.offset < limit)):
                                    with m.If(~req.write):
                                        m.next = "ROUTE_READ"
                                    with m.Elif(req.region == Region.ROUTE_INDEX):
                                        m.d.comb += [
                                            expander.index_write.addr.eq(req.offset),
                                            expander.index_write.data.eq(req.data),
                                            expander.index_write.en.eq(1)]
                                    with m.Else():
                                        m.d.comb += [
                                            expander.dest_write.addr.eq(req.offset),
                                            expander.dest_write.data.eq(req.data),
                                            expander.dest_write.en.eq(1)]
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
                for k, tile in enumerate(self.order):
                    expander = expanders[tile]
                    for region, port in ((Region.ROUTE_INDEX, expander.index_read),
                                         (Region.ROUTE_DEST, expander.dest_read)):
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
                for k, tile in enumerate(self.order):
                    with m.If(selected[k] & ingress_drained[k]):
                        m.d.comb += core_req_valid[k].eq(1)
                        with m.If(core_req_ready[k]):
                            with m.If(req.write):   # done: a write has no answer
                                m.next = "IDLE"
                            with m.Else():
                                m.next = "CORE_WAIT"
            with m.State("CORE_WAIT"):   # a read's answer
                for k, tile in enumerate(self.order):
                    with m.If(selected[k]):
                        if register_answers:
                            m.d.comb += core_resp_ready[k].eq(1)
                            with m.If(core_resp_valid[k]):
                                m.d.sync += route_data.eq(core_resp_data[k])
                                m.next = "ROUTE_RESP"
                        else:
                            m.d.comb += [self.bus.resp.valid.eq(core_resp_valid[k]),
                                         self.bus.resp.payload.eq(core_resp_data[k]),
                                         core_resp_ready[k].eq(self.bus.resp.ready)]
                            with m.If(core_resp_valid[k] & self.bus.resp.ready):
                                m.next = "IDLE"
        return m
