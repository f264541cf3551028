"""Chip profiles: the chips the compiler targets, by name.

A profile fixes everything the gateware is generated with (mesh size, host tile, every tile's
core shape, lanes, synapse memory style and route-table capacity) and so, through
:func:`spikefab.hdl.host_link.chip_info`, exactly what the chip's INFO command answers. The
compiler places a model on a profile; the driver checks that the chip it talks to answers the
image's :class:`~spikefab.hdl.abi.ChipInfo`.

================  ====================================================================
``icebreaker``    iCE40 UP5K: a 784-128-10 MNIST net. Tile (0, 0): 1024 x 128 x 8-bit
                  synapses in the UP5K's four SPRAMs (its whole 1 Mbit), 8 lanes;
                  tile (1, 0): 128 x 10 in block RAM, 1 lane (10 cycles per hidden
                  spike, beside layer 1's 16 per input event: more lanes there do not
                  fit in the UP5K's logic cells beside layer 1).
``ulx3s``         ULX3S (ECP5-85F): the same 784-128-10 net with twice the lanes, all in
                  block RAM (DP16KD): 16 weights per cycle, so 8 cycles per layer-1 event;
                  synapse words registered (the deep block-RAM multiplexer would limit Fmax).
``tiny``          Two small tiles for fast tests: 64 x 16 and 16 x 8, 4 lanes each.
================  ====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .abi import (MAX_FRAME, AERPacket, ChipInfo, CoreMemoryMap, CoreShape, MemoryStyle,
                  RouteDest, RouteEntry)
from .chip import Chip, TileConfig
from .host_link import chip_info
from .chip_tile import ChipTile
from .synapse import SynapseMemory
from .tile import Egress, RouteExpander

__all__ = ["ChipProfile", "PROFILES", "get_profile", "BoardChip", "BOARD_CHIPS",
           "get_board_chip"]

#: The fields of a :class:`TileConfig` in :meth:`ChipProfile.to_dict`, with its shape's.
_TILE_FIELDS = ("axons", "neurons", "w_bits", "v_bits", "events_per_tick", "lanes", "memory",
                "destinations", "register_reads", "lut_ram")


@dataclass(frozen=True)
class ChipProfile:
    """A chip the compiler can target.

    Parameters
    ----------
    name, description : str
    cols, rows : int
        The mesh.
    host : (int, int)
        The tile whose router has the host port.
    tiles : dict of (x, y) -> TileConfig
        A core on every tile of the mesh.
    output_depth : int
        Output events the host link queues.
    router_fifo_depth : int
        Packets each router input queues (:class:`~spikefab.hdl.router.RouterNode`'s
        ``fifo_depth``). 0: none, the sender's register (a neighbour's output register, a
        route expander, the host link) is the input's head.
    dsp_counters : bool
        Counters in DSP blocks on an iCE40 (:class:`~spikefab.hdl.chip.Chip`'s
        ``dsp_counters``; the host link's cycle count too).
    for_tests : bool
        A chip for tests only: the commands accept it but do not offer it.
    board : str or None
        The board a generated chip was made for (:data:`BOARD_CHIPS`), if any.
    encoder : bool
        The host link draws spikes from pixels (ENCODE; INFO's features say so).
    rx_queue : int
        Bytes of requests the host link queues while it executes one (INFO says how many).
    """
    name: str
    description: str
    cols: int
    rows: int
    host: tuple[int, int]
    tiles: dict = field(hash=False)
    output_depth: int = 256
    router_fifo_depth: int = 2
    dsp_counters: bool = False
    for_tests: bool = False
    board: str | None = None
    encoder: bool = False
    rx_queue: int = 0

    def __post_init__(self):
        want = {(x, y) for y in range(self.rows) for x in range(self.cols)}
        if set(self.tiles) != want:
            raise ValueError(f"profile {self.name!r}: tiles must configure exactly "
                             f"{sorted(want)}, not {sorted(self.tiles)}")
        if tuple(self.host) not in want:
            raise ValueError(f"profile {self.name!r}: host tile {self.host!r} is outside "
                             f"the mesh")

    @property
    def order(self) -> list[tuple[int, int]]:
        """The tiles in tile order, ``y * cols + x``."""
        return [(x, y) for y in range(self.rows) for x in range(self.cols)]

    def info(self) -> ChipInfo:
        """What the chip of this profile answers to INFO."""
        return chip_info(cols=self.cols, rows=self.rows, host=self.host, tiles=self.tiles,
                         output_depth=self.output_depth, encoder=self.encoder,
                         rx_queue=self.rx_queue)

    def to_dict(self) -> dict:
        """Everything the chip is generated from, as JSON-ready values (a chip image records
        its chip so; :meth:`from_dict` reads it back)."""
        tiles = []
        for (x, y), config in sorted(self.tiles.items(), key=lambda item: item[0][::-1]):
            shape = config.shape
            tiles.append({"x": x, "y": y, "axons": shape.axons, "neurons": shape.neurons,
                          "w_bits": shape.w_bits, "v_bits": shape.v_bits,
                          "events_per_tick": shape.events_per_tick, "lanes": config.lanes,
                          "memory": config.memory.value, "destinations": config.destinations,
                          "register_reads": config.register_reads, "lut_ram": config.lut_ram})
        return {"name": self.name, "description": self.description, "cols": self.cols,
                "rows": self.rows, "host": list(self.host), "tiles": tiles,
                "output_depth": self.output_depth, "router_fifo_depth": self.router_fifo_depth,
                "dsp_counters": self.dsp_counters, "for_tests": self.for_tests,
                "board": self.board, "encoder": self.encoder, "rx_queue": self.rx_queue}

    @classmethod
    def from_dict(cls, d: dict) -> "ChipProfile":
        """The profile :meth:`to_dict` described; ValueError naming what is missing or wrong."""
        try:
            tiles = {}
            for t in d["tiles"]:
                unknown = set(t) - {"x", "y", *_TILE_FIELDS}
                if unknown:
                    raise ValueError(f"unknown tile fields {sorted(unknown)}")
                shape = CoreShape(t["axons"], t["neurons"], t["w_bits"], t["v_bits"],
                                  t["events_per_tick"])
                tiles[int(t["x"]), int(t["y"])] = TileConfig(
                    shape, lanes=int(t["lanes"]), memory=t["memory"],
                    destinations=int(t["destinations"]),
                    register_reads=bool(t["register_reads"]),
                    lut_ram=bool(t.get("lut_ram", False)))
            return cls(name=str(d["name"]), description=str(d["description"]),
                       cols=int(d["cols"]), rows=int(d["rows"]), host=tuple(d["host"]),
                       tiles=tiles, output_depth=int(d["output_depth"]),
                       router_fifo_depth=int(d["router_fifo_depth"]),
                       dsp_counters=bool(d["dsp_counters"]), for_tests=bool(d["for_tests"]),
                       board=None if d.get("board") is None else str(d["board"]),
                       encoder=bool(d.get("encoder", False)),
                       rx_queue=int(d.get("rx_queue", 0)))
        except KeyError as exc:
            raise ValueError(f"a chip description without {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"a malformed chip description ({exc})") from None

    def chip(self, **kwargs):
        """The gateware (:class:`spikefab.hdl.chip.Chip`) of this profile; ``kwargs`` go to
        its constructor (``fifo_depth``, ``test_hooks``)."""
        kwargs.setdefault("fifo_depth", self.router_fifo_depth)
        kwargs.setdefault("dsp_counters", self.dsp_counters)
        return Chip(cols=self.cols, rows=self.rows, tiles=self.tiles, host=self.host, **kwargs)


PROFILES: dict[str, ChipProfile] = {p.name: p for p in (
    ChipProfile(
        name="icebreaker",
        description="iCEBreaker (iCE40 UP5K): layer 1 of a 784-128-10 MNIST net in the four "
                    "SPRAMs (1024 x 128 x 8 bit), layer 2 in block RAM",
        cols=2, rows=1, host=(0, 0),
        tiles={
            (0, 0): TileConfig(CoreShape(1024, 128, w_bits=8, v_bits=16), lanes=8,
                               memory=MemoryStyle.SPRAM, destinations=128),
            (1, 0): TileConfig(CoreShape(128, 10, w_bits=8, v_bits=16), lanes=1,
                               memory=MemoryStyle.BLOCK, destinations=16),
        },
        router_fifo_depth=0, dsp_counters=True),
    ChipProfile(
        name="ulx3s",
        description="ULX3S (ECP5-85F): a 784-128-10 MNIST net, 16 lanes, synapses in block RAM",
        cols=2, rows=1, host=(0, 0),
        tiles={
            (0, 0): TileConfig(CoreShape(1024, 128, w_bits=8, v_bits=16), lanes=16,
                               memory=MemoryStyle.BLOCK, destinations=128, register_reads=True),
            (1, 0): TileConfig(CoreShape(128, 16, w_bits=8, v_bits=16), lanes=16,
                               memory=MemoryStyle.BLOCK, destinations=16, register_reads=True),
        },
        encoder=True, rx_queue=1024),
    ChipProfile(
        name="tiny",
        description="two small tiles (64 x 16 and 16 x 8) for fast tests",
        for_tests=True,
        cols=2, rows=1, host=(0, 0),
        tiles={
            (0, 0): TileConfig(CoreShape(64, 16, w_bits=8, v_bits=16), lanes=4,
                               memory=MemoryStyle.BLOCK, destinations=16),
            (1, 0): TileConfig(CoreShape(16, 8, w_bits=8, v_bits=16), lanes=4,
                               memory=MemoryStyle.BLOCK, destinations=8),
        },
        encoder=True, rx_queue=64),
)}


def _named(table: dict, name, what: str):
    """``table[name]``; ValueError naming ``what`` was asked for and the known names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}") from None


def get_profile(name: str) -> ChipProfile:
    """The profile called ``name``; raises ValueError naming the known profiles."""
    return _named(PROFILES, name, "chip profile")


@dataclass(frozen=True)
class BoardChip:
    """How a chip is generated for a board, and the resources it may use there.

    The memory estimate (:meth:`blocks`) counts the block RAMs Yosys maps the chip's memories
    to: each memory deeper than ``lut_depth`` words takes the fewest blocks of any
    ``(depth, width)`` shape a block offers (``ceil(D / d) * ceil(W / w)``); shallower ones go
    to LUT RAM or flip-flops; synapses in SPRAM take none. BENCHMARKS.md compares it with the
    builds.
    """
    board: str
    lanes: int                    #: weights per cycle on the cores of the hidden layers
    output_lanes: int             #: ... and on the last layer's
    spram: bool                   #: the largest synapse memory in the iCE40 UP5K's SPRAMs
    register_reads: bool
    router_fifo_depth: int
    dsp_counters: bool
    max_cores: int                #: cores that fit the device's logic beside the host link
    block_count: int              #: block RAMs of the device
    block_shapes: tuple           #: ``(depth, width)`` configurations of one block RAM
    lut_depth: int                #: memories this shallow take no block RAM
    lut_ram: bool = False         #: small memories may go to LUT RAM when block RAM is short
    spram_words: int = 0          #: words of the SPRAM (16-bit words, ``spram_count`` of them)
    spram_count: int = 0
    #: the host link's encoder (ENCODE) and its queue of request bytes: where the device has
    #: the logic for them (the UP5K has not: its chip leaves a few dozen of its 5,280 cells
    #: free)
    encoder: bool = False
    rx_queue: int = 0

    def _memory(self, depth: int, width: int) -> int:
        if depth <= self.lut_depth:
            return 0
        return min(-(-depth // d) * -(-width // w) for d, w in self.block_shapes)

    def tile_blocks(self, config: TileConfig) -> int:
        """Block RAMs of one tile: its core's memories, route tables and spike queue (with
        ``lut_ram``, the synapses alone)."""
        shape = config.shape
        mm = CoreMemoryMap(shape, config.lanes)
        small = 0 if config.lut_ram else 1
        blocks = 0
        if config.memory is not MemoryStyle.SPRAM:
            bank = SynapseMemory.BANK_DEPTH
            banked = config.register_reads and mm.synapse_words > bank
            depth = bank if banked else mm.synapse_words
            for start in range(0, mm.synapse_words, depth):
                blocks += self._memory(min(depth, mm.synapse_words - start),
                                       config.lanes * shape.w_bits)
        blocks += small * 2 * self._memory(shape.neurons, shape.v_bits)      # membrane, bias
        blocks += small * self._memory(mm.rows, config.lanes * shape.accumulator_bits)
        index, dests = RouteExpander.table_depths(shape.neurons, config.destinations)
        blocks += small * self._memory(index, RouteEntry.size)
        blocks += small * self._memory(dests, RouteDest.size)
        blocks += small * self._memory(ChipTile.egress_depth(shape.neurons), Egress.size)
        return blocks

    def blocks(self, profile: ChipProfile) -> int:
        """Block RAMs of the whole chip and its host link."""
        return (sum(self.tile_blocks(c) for c in profile.tiles.values())
                + self._memory(MAX_FRAME, 8) + self._memory(profile.output_depth,
                                                           AERPacket.size)
                + (self._memory(profile.rx_queue, 8) if profile.rx_queue else 0))

    def spram_fits(self, config: TileConfig) -> bool:
        """Whether a core's synapses fit the SPRAMs: words as wide as the core's lanes of
        weights, in 16-bit SPRAMs side by side, and as many rows of them as the depth needs."""
        mm = CoreMemoryMap(config.shape, config.lanes)
        wide = -(-config.lanes * config.shape.w_bits // 16)
        deep = -(-mm.synapse_words // self.spram_words)
        return wide * deep <= self.spram_count


#: The boards chips are generated for (``spikefab compile --board``); their builds:
#: boards/top.py. The core styles are those of the ``icebreaker`` and ``ulx3s`` profiles.
BOARD_CHIPS: dict[str, BoardChip] = {b.board: b for b in (
    BoardChip(board="icebreaker", lanes=8, output_lanes=1, spram=True, register_reads=False,
              router_fifo_depth=0, dsp_counters=True, max_cores=2, block_count=30,
              block_shapes=((256, 16), (512, 8), (1024, 4), (2048, 2)), lut_depth=8,
              spram_words=16384, spram_count=4),
    BoardChip(board="ulx3s-85f", lanes=16, output_lanes=16, spram=False, register_reads=True,
              router_fifo_depth=2, dsp_counters=False, max_cores=16, block_count=208,
              block_shapes=((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
              lut_depth=64, lut_ram=True, encoder=True, rx_queue=1024),
)}


def get_board_chip(board: str) -> BoardChip:
    """How chips are generated for ``board``; ValueError naming the boards otherwise."""
    return _named(BOARD_CHIPS, board, "board")
