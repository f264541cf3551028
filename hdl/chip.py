"""The chip: an R x C mesh of router nodes and cores, a host port, and the tick barrier.

Clock domains (GALS): routers, route expanders and the tick controller run in the mesh domain
(``sync``); the core of tile ``(x, y)`` runs in its own domain ``core_x_y`` (give it the mesh's
clock where no separate clock is wanted), and every crossing is an ``AsyncFIFO``. With
``clocking=Clocking.SINGLE`` (boards with one clock) the cores run in ``sync`` too and the
crossings are synchronous FIFOs: the same event queues in the same places, without the
synchronizers and gray-code pointers; the chip bus reaches each core directly (no queue).

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

The parts, each a component of its own: the router nodes (``hdl/router.py``), joined here into
the mesh; one :class:`~spikefab.hdl.chip_tile.ChipTile` per tile (core, queues, sequencer,
route expander); the :class:`~spikefab.hdl.tick.TickController` (the count of packets in
flight and the barrier); the :class:`~spikefab.hdl.chip_bus.ChipBus` (the host's requests to
every tile's core and route tables).
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .abi import (COORD_BITS, MESH_LIMIT, NEURON_LIMIT, AERPacket, Clocking, CoreMemoryMap,
                  CoreShape, MemoryStyle, Region, RouteDest, RouteEntry)
from .chip_bus import ChipBus, chip_bus_signature
from .chip_tile import ChipTile
from .core import Handshake, LIFCore
from .lif import LIFDatapath
from .router import Port, RouterNode
from .tick import TickController

__all__ = ["TileConfig", "chip_request_layout", "Chip"]


@dataclass(frozen=True)
class TileConfig:
    """The core of one tile: its shape, lanes, synapse memory style, route-table capacity,
    whether synapse words are registered (:class:`LIFCore`'s ``register_reads``), and whether
    its small memories are LUT RAM (``lut_ram``: the core's membrane, bias and accumulator
    memories, the route tables and the egress queue; the synapses stay block RAM)."""
    shape: CoreShape
    lanes: int = 8
    memory: MemoryStyle = MemoryStyle.BLOCK
    destinations: int = 64
    register_reads: bool = False
    lut_ram: bool = False

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
    bus : In(chip_bus_signature(request_layout))
        Chip-bus requests (:func:`chip_request_layout`: tile, region, offset, write, data) and
        read responses (:class:`~spikefab.hdl.chip_bus.ChipBus`). A read of a route table
        returns the entry's bits, zero-extended; entries past a table's end (and tiles that do
        not exist) read 0 and ignore writes. Route reads share the expander's table read ports
        with spike expansion (see :class:`~spikefab.hdl.tile.RouteExpander`). A core request
        waits until the events already in the tile's ingress queue have entered the core, so it
        is ordered after them (the core finishes an event before its bus).
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
                                 register_reads=c.register_reads, lut_ram=c.lut_ram,
                                 spike_fifo_depth=0 if clocking == Clocking.SINGLE else
                                 LIFDatapath.LATENCY + int(c.register_reads) + 1,
                                 dsp_counters=self.dsp_counters, routed=True)
                      for t, c in self.tiles.items()}
        self.request_layout = chip_request_layout(self.tiles)
        hooks = ({"mesh_stall": In(cols * rows), "rw_collision": Out(cols * rows)}
                 if test_hooks else {})
        super().__init__({
            **hooks,
            "host_in": In(stream.Signature(AERPacket)),
            "host_out": Out(stream.Signature(AERPacket)),
            "tick": In(Handshake),
            "quiet": Out(1),
            "bus": In(chip_bus_signature(self.request_layout)),
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
            wiring.connect(m, wiring.flipped(self.host_in), host_stage.w_stream)
            wiring.connect(m, host_stage.r_stream, host_router.host.rx)
        else:
            wiring.connect(m, wiring.flipped(self.host_in), host_router.host.rx)
        if self.clocking == Clocking.GALS:
            m.submodules.host_out_fifo = out_fifo = SyncFIFOBuffered(width=AERPacket.size,
                                                                     depth=16)
            wiring.connect(m, host_router.host.tx, out_fifo.w_stream)
            wiring.connect(m, out_fifo.r_stream, wiring.flipped(self.host_out))
        else:
            # On one clock the consumer is the host link, which takes an output every cycle,
            # and the router's output is a register already: no queue (each of its places
            # would be 31 flip-flops on the iCE40).
            wiring.connect(m, host_router.host.tx, wiring.flipped(self.host_out))

        # ---- the tick controller: packets into and out of the mesh, DONE, the barrier ----
        # At most every place a packet can wait in (a router's input queues and output
        # registers, the host's input stage) holds one: in flight is never more.
        places = sum(len(r.ports) * (self.fifo_depth + 1) for r in routers.values()) + 1
        m.submodules.tick_controller = ticker = TickController(
            tiles=len(self.order), routers=len(routers), places=places,
            dsp_counters=self.dsp_counters)
        wiring.connect(m, wiring.flipped(self.tick), ticker.tick)
        # Each router's drops are registered beside it before the sum crosses the die to the
        # controller (a router's drop is decided at its queue head, late in the cycle). A drop
        # takes a packet out of the count, so counting it late only keeps the mesh busy a
        # cycle longer: the barrier never opens early.
        drops_q = []
        for (x, y), r in routers.items():
            q = Signal.like(r.dropped, name=f"drops_{x}_{y}")
            m.d.sync += q.eq(r.dropped)
            drops_q.append(q)
        m.d.comb += [ticker.injected.eq(self.host_in.valid & self.host_in.ready),
                     ticker.to_host.eq(host_router.host.tx.valid & host_router.host.tx.ready),
                     ticker.dropped.eq(sum(drops_q)),
                     self.quiet.eq(ticker.quiet), self.ticks.eq(ticker.ticks),
                     self.mesh_drops.eq(ticker.mesh_drops)]

        # ---- the tiles: core, queues, sequencer, route expander ----
        tiles = []
        for k, tile in enumerate(self.order):
            x, y = tile
            m.submodules[f"tile_{x}_{y}"] = t = ChipTile(
                x=x, y=y, core=self.cores[tile], destinations=self.tiles[tile].destinations,
                lut_ram=self.tiles[tile].lut_ram,
                domain=self.domain(tile) if self.clocking == Clocking.GALS else "sync",
                clocking=self.clocking, registered_reads=self.registered_reads,
                test_hooks=self.test_hooks)
            wiring.connect(m, routers[tile].local.tx, t.events)
            wiring.connect(m, t.packets, routers[tile].local.rx)
            m.d.comb += [t.tick.eq(ticker.send_tick), t.stamp.eq(ticker.stamp),
                         ticker.owed[k].eq(t.owed), ticker.arrived[k].eq(t.arrived),
                         ticker.expanded[k].eq(t.packets.valid & t.packets.ready),
                         ticker.done[k].eq(t.done)]
            if self.test_hooks:
                m.d.comb += self.rw_collision[k].eq(t.rw_collision)
            tiles.append(t)

        # ---- the chip bus: each request to its tile's route tables or core ----
        m.submodules.chip_bus = chip_bus = ChipBus(
            self.request_layout, [t.bus_signature for t in tiles],
            register_answers=self.registered_reads)
        wiring.connect(m, wiring.flipped(self.bus), chip_bus.bus)
        for k, t in enumerate(tiles):
            wiring.connect(m, chip_bus.tile(k), t.bus)
        return m
