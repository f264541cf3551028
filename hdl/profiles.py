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
