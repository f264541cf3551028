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

from .abi import ChipInfo, CoreShape, MemoryStyle
from .chip import Chip, TileConfig
from .host_link import chip_info

__all__ = ["ChipProfile", "PROFILES", "get_profile"]

#: The fields of a :class:`TileConfig` in :meth:`ChipProfile.to_dict`, with its shape's.
_TILE_FIELDS = ("axons", "neurons", "w_bits", "v_bits", "events_per_tick", "lanes", "memory",
                "destinations", "register_reads")


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
                         output_depth=self.output_depth)

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
                          "register_reads": config.register_reads})
        return {"name": self.name, "description": self.description, "cols": self.cols,
                "rows": self.rows, "host": list(self.host), "tiles": tiles,
                "output_depth": self.output_depth, "router_fifo_depth": self.router_fifo_depth,
                "dsp_counters": self.dsp_counters, "for_tests": self.for_tests}

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
                    register_reads=bool(t["register_reads"]))
            return cls(name=str(d["name"]), description=str(d["description"]),
                       cols=int(d["cols"]), rows=int(d["rows"]), host=tuple(d["host"]),
                       tiles=tiles, output_depth=int(d["output_depth"]),
                       router_fifo_depth=int(d["router_fifo_depth"]),
                       dsp_counters=bool(d["dsp_counters"]), for_tests=bool(d["for_tests"]))
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
        }),
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
        }),
)}


def get_profile(name: str) -> ChipProfile:
    """The profile called ``name``; raises ValueError naming the known profiles."""
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown chip profile {name!r}; known profiles: "
                         f"{', '.join(sorted(PROFILES))}") from None
