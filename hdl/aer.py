"""Address-event (AER) packets: the one format of everything that travels between cores.

A packet is 31 bits (:data:`AERPacket`)::

    kind (1) | x (3) | y (3) | body (24)

* ``EVENT`` packets go to core ``(x, y)``; ``body.event.axon`` is the axon (10 bits).
* ``OUTPUT`` packets go to the host port; ``(x, y)`` is the core they come from,
  ``body.output.neuron`` the neuron that spiked and ``body.output.tick`` the tick of that
  update (16 bits, wrapping).

Meshes have up to 8 x 8 tiles; ``x`` grows eastwards, ``y`` southwards. The same layout is used
by the RTL, the golden model's packet helpers and the driver.
"""

import enum

from amaranth.hdl import unsigned
from amaranth.lib import data
from amaranth.utils import exact_log2

from ..sim.golden import MESH_LIMIT

__all__ = ["PacketKind", "COORD_BITS", "MESH_LIMIT", "TICK_BITS", "AERPacket", "pack_event",
           "pack_output", "unpack"]

COORD_BITS = exact_log2(MESH_LIMIT)
TICK_BITS = 16


class PacketKind(enum.IntEnum):
    EVENT = 0
    OUTPUT = 1


AERPacket = data.StructLayout({
    "kind": unsigned(1),
    "x": unsigned(COORD_BITS),
    "y": unsigned(COORD_BITS),
    "body": data.UnionLayout({
        "event": data.StructLayout({"axon": unsigned(10)}),
        "output": data.StructLayout({"neuron": unsigned(8), "tick": unsigned(TICK_BITS)}),
    }),
})

_BODY = 1 + 2 * COORD_BITS


def pack_event(x: int, y: int, axon: int) -> int:
    """An EVENT packet as an integer (what a bench or host puts on a stream)."""
    return int(PacketKind.EVENT) | x << 1 | y << (1 + COORD_BITS) | axon << _BODY


def pack_output(x: int, y: int, neuron: int, tick: int) -> int:
    return (int(PacketKind.OUTPUT) | x << 1 | y << (1 + COORD_BITS) | neuron << _BODY
            | (tick & ((1 << TICK_BITS) - 1)) << (_BODY + 8))


def unpack(word: int) -> tuple:
    """``("event", x, y, axon)`` or ``("output", x, y, neuron, tick)``."""
    kind = word & 1
    x = (word >> 1) & (MESH_LIMIT - 1)
    y = (word >> (1 + COORD_BITS)) & (MESH_LIMIT - 1)
    body = word >> _BODY
    if kind == PacketKind.EVENT:
        return ("event", x, y, body & 0x3FF)
    return ("output", x, y, body & 0xFF, (body >> 8) & ((1 << TICK_BITS) - 1))
