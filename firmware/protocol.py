"""The host link's wire protocol: one definition for the gateware (``hdl/host_link.py``), the
driver and the board stand-ins.

**Framing.** Frames travel over a byte stream in SLIP (RFC 1055): ``END`` (0xC0) ends a frame,
``ESC`` (0xDB) escapes an ``END`` (``ESC ESC_END``) or an ``ESC`` (``ESC ESC_ESC``) in the body.
Senders also put an ``END`` *before* every frame, so whatever garbage the line carried is cut
off as a frame of its own; empty frames are ignored. SLIP was chosen over COBS because both of
its ends stream byte by byte in the gateware: the encoder needs no look-ahead buffer.

**Frame body** (after unescaping), at most :data:`MAX_FRAME` bytes::

    request:   seq (1) | command (1) | payload | crc (2)
    response:  seq (1) | status  (1) | payload | crc (2)

``crc`` is CRC-16/GENIBUS (polynomial 0x1021, initial value 0xFFFF, no reflection, final XOR
0xFFFF) of everything before it, sent high byte first; run over a whole correct body, the
register (before the final XOR) ends at the residue :data:`CRC_RESIDUE`. The final XOR matters:
without it the residue is 0, and zero bytes appended to a frame would still check. Every request gets exactly one response with the request's ``seq``: ``status`` is
:attr:`Status.OK` with the command's answer as payload, or a NAK reason (:class:`Status`) with
the request's command byte as payload. A request that is not answered OK changed nothing; a
frame so broken that its ``seq`` is unknown (too short) is answered with ``seq`` 0. All
multi-byte integers are little-endian, except the CRC.

**Memory words** are :attr:`ChipInfo.word_bytes` bytes each (the chip bus's data width rounded
up to bytes); signed values are two's complement in that width and read back sign-extended.

================  =================================================  ==========================
command           request payload                                    answer (OK payload)
================  =================================================  ==========================
INFO              (none)                                             :class:`ChipInfo` bytes
WRITE             tile, region, offset (u32), word x n  (n >= 1)     (none)
READ              tile, region, offset (u32), count (u16)            word x count
FILL              tile, region, offset (u32), count (u32), word      (none)
RUN               ticks (u16), event (u16) x n  (n >= 0)             ticks (u32), pending (u16)
OUTPUTS           max (u16)                                          output (4 bytes) x k
STATUS            (none)                                             :class:`LinkStatus` bytes
RESET             (none)                                             (none)
================  =================================================  ==========================

* ``tile`` is ``y * cols + x``; ``region`` is a :class:`Region`; ``offset`` counts words from
  the region's start; every word addressed must lie inside the region, else ``ADDRESS``.
* RUN injects its events into the current tick, then runs ``ticks`` ticks (0 = inject only),
  and answers when the chip is quiet (every output of the last update is queued) with the
  chip's tick count and the number of output events waiting. An event is
  ``axon | x << 10 | y << 13``; one for a missing tile or axon gets ``ADDRESS`` (and none of
  the frame's events is injected).
* OUTPUTS takes up to ``max`` output events off the chip's output queue (oldest first), each
  ``neuron (1), x | y << 3 (1), tick (u16)``; ``max`` is at most :data:`MAX_OUTPUTS`.
* RESET zeroes every membrane and accumulator and empties the output queue; weights,
  parameters, routes and counters stay.

The module imports no simulator and no gateware, so the driver layer can be tested alone.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

__all__ = [
    "END", "ESC", "ESC_END", "ESC_ESC", "CRC_RESIDUE", "MAX_FRAME", "MAX_OUTPUTS", "PROTOCOL_VERSION",
    "Command", "Status", "Region", "Register", "ROUTE_ENTRY_BITS", "ROUTE_DEST_BITS",
    "route_entry", "unpack_route_entry", "route_dest", "unpack_route_dest", "ProtocolError", "crc16", "slip_encode", "SlipDecoder",
    "frame", "parse_body", "TileInfo", "ChipInfo", "LinkStatus", "pack_event_word",
    "unpack_event_word", "OUTPUT_BYTES", "unpack_outputs",
]

PROTOCOL_VERSION = 1

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD

#: Longest frame body (seq, command or status, payload, CRC), in bytes, either way.
MAX_FRAME = 512
#: Bytes around a payload: seq, command/status, CRC.
OVERHEAD = 4
MAX_PAYLOAD = MAX_FRAME - OVERHEAD
OUTPUT_BYTES = 4
#: Most output events one OUTPUTS answer carries.
MAX_OUTPUTS = MAX_PAYLOAD // OUTPUT_BYTES
#: The bytes of a memory address in WRITE/READ/FILL: tile, region, offset.
ADDRESS_BYTES = 6


class Command(enum.IntEnum):
    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    FILL = 0x04
    RUN = 0x05
    OUTPUTS = 0x06
    STATUS = 0x07
    RESET = 0x08


class Status(enum.IntEnum):
    """The ``status`` byte of a response: OK, or why a request was refused (a NAK)."""
    OK = 0x00
    CRC = 0x01       #: the CRC does not match: the frame was corrupted
    SHORT = 0x02     #: fewer than 4 bytes: not even seq, command and CRC
    OVERSIZE = 0x03  #: longer than MAX_FRAME: the rest was not kept
    ESCAPE = 0x04    #: ESC followed by anything but ESC_END or ESC_ESC (END included)
    COMMAND = 0x05   #: unknown command
    LENGTH = 0x06    #: the payload's length is wrong for the command
    ADDRESS = 0x07   #: a tile, region, offset or event outside the chip
    ARGUMENT = 0x08  #: a count or value outside what the command allows

    def describe(self) -> str:
        return _STATUS_TEXT[self]


_STATUS_TEXT = {
    Status.OK: "ok",
    Status.CRC: "CRC mismatch (the frame was corrupted on the way)",
    Status.SHORT: "frame too short",
    Status.OVERSIZE: f"frame longer than {MAX_FRAME} bytes",
    Status.ESCAPE: "bad SLIP escape",
    Status.COMMAND: "unknown command",
    Status.LENGTH: "payload length wrong for the command",
    Status.ADDRESS: "address outside the chip",
    Status.ARGUMENT: "argument out of range",
}


class Region(enum.IntEnum):
    """What a WRITE/READ/FILL addresses on a tile. 0-4 are the core's own regions (the same
    numbers as :class:`spikefab.hdl.memory_map.Region`), 5-6 the tile's route tables. A write
    to an ACCUMULATOR word, or to a counter in REGISTER, clears it (the value is ignored)."""
    SYNAPSE = 0
    MEMBRANE = 1
    BIAS = 2
    ACCUMULATOR = 3
    REGISTER = 4
    ROUTE_INDEX = 5
    ROUTE_DEST = 6


class Register(enum.IntEnum):
    """Offsets in the REGISTER region (the gateware's ``hdl.memory_map.Reg`` is this class):
    parameters, then 32-bit wrapping counters, which a write clears (the value written is
    ignored)."""
    THRESHOLD = 0
    LEAK = 1
    RESET = 2
    EVENTS = 3
    SOPS = 4
    TICKS = 5
    DROP_RANGE = 6
    DROP_BUDGET = 7


#: Route-table words (the bits of ``hdl.tile.RouteEntry`` and ``hdl.tile.RouteDest``).
ROUTE_ENTRY_BITS, ROUTE_DEST_BITS = 22, 16


def route_entry(start: int = 0, count: int = 0, to_host: bool = False) -> int:
    """A ROUTE_INDEX word: ``start | count << 10 | to_host << 21``; the neuron's destinations
    are ``ROUTE_DEST[start : start + count]``."""
    return start | count << 10 | int(to_host) << 21


def unpack_route_entry(word: int) -> tuple[int, int, bool]:
    return word & 0x3FF, (word >> 10) & 0x7FF, bool(word >> 21 & 1)


def route_dest(x: int, y: int, axon: int) -> int:
    """A ROUTE_DEST word: ``x | y << 3 | axon << 6``."""
    return x | y << 3 | axon << 6


def unpack_route_dest(word: int) -> tuple[int, int, int]:
    return word & 7, (word >> 3) & 7, (word >> 6) & 0x3FF


class ProtocolError(ValueError):
    """A frame or payload that does not follow the protocol; ``status`` says how."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = Status(status)


# ---- CRC and SLIP ----

def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


#: The CRC register after a whole correct body (seq .. CRC).
CRC_RESIDUE = 0x1D0F


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """The CRC register (poly 0x1021, init 0xFFFF, MSB first) after ``data``, before the final
    XOR: CRC-16/CCITT-FALSE (check value of ``b"123456789"``: 0x29B1); the frame's CRC is this
    XOR 0xFFFF (CRC-16/GENIBUS, check value 0xD64E)."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def slip_encode(body: bytes) -> bytes:
    """One frame on the wire: ``END``, the escaped body, ``END``."""
    escaped = bytes(body).replace(bytes([ESC]), bytes([ESC, ESC_ESC])) \
                         .replace(bytes([END]), bytes([ESC, ESC_END]))
    return bytes([END]) + escaped + bytes([END])


class SlipDecoder:
    """Cuts a byte stream into frame bodies, as the gateware does.

    :meth:`feed` returns the frames completed by the bytes given: each is ``(body, error)``,
    where ``error`` is None, :attr:`Status.OVERSIZE` (``body`` holds the first
    :data:`MAX_FRAME` bytes) or :attr:`Status.ESCAPE`. Empty frames are skipped.
    """

    def __init__(self, max_frame: int = MAX_FRAME):
        self.max_frame = max_frame
        self._body = bytearray()
        self._escaped = False
        self._error = None

    def feed(self, data: bytes) -> list[tuple[bytes, Status | None]]:
        frames = []
        for byte in data:
            if byte == END:
                if self._escaped:
                    self._error = self._error or Status.ESCAPE
                if self._body or self._error is not None:
                    frames.append((bytes(self._body), self._error))
                self._body.clear()
                self._escaped = False
                self._error = None
                continue
            if self._escaped:
                self._escaped = False
                if byte == ESC_END:
                    byte = END
                elif byte == ESC_ESC:
                    byte = ESC
                else:
                    self._error = self._error or Status.ESCAPE
                    continue
            elif byte == ESC:
                self._escaped = True
                continue
            if len(self._body) < self.max_frame:
                self._body.append(byte)
            else:
                self._error = self._error or Status.OVERSIZE
        return frames


def frame(seq: int, code: int, payload: bytes = b"") -> bytes:
    """A request (``code`` = command) or response (``code`` = status) ready for the wire."""
    if not 0 <= seq <= 0xFF or not 0 <= code <= 0xFF:
        raise ValueError(f"seq and code are bytes, not {seq!r}, {code!r}")
    body = bytes([seq, code]) + bytes(payload)
    if len(body) + 2 > MAX_FRAME:
        raise ValueError(f"a frame carries at most {MAX_PAYLOAD} payload bytes, "
                         f"not {len(payload)}")
    return slip_encode(body + (crc16(body) ^ 0xFFFF).to_bytes(2, "big"))


def parse_body(body: bytes, error: Status | None = None) -> tuple[int, int, bytes]:
    """``(seq, code, payload)`` of a frame body; raises :class:`ProtocolError` for a frame
    the receiver must refuse (in the order the gateware checks)."""
    if error is not None:
        raise ProtocolError(error, f"{error.describe()}")
    if len(body) < OVERHEAD:
        raise ProtocolError(Status.SHORT, f"a frame has at least {OVERHEAD} bytes, "
                                          f"this one {len(body)}")
    if crc16(body) != CRC_RESIDUE:
        raise ProtocolError(Status.CRC, "CRC mismatch")
    return body[0], body[1], bytes(body[2:-2])


# ---- events and outputs ----

def pack_event_word(x: int, y: int, axon: int) -> int:
    """A RUN event: ``axon | x << 10 | y << 13``."""
    if not (0 <= x < 8 and 0 <= y < 8 and 0 <= axon < 1024):
        raise ValueError(f"an event is (x < 8, y < 8, axon < 1024), not {(x, y, axon)!r}")
    return axon | x << 10 | y << 13


def unpack_event_word(word: int) -> tuple[int, int, int]:
    return (word >> 10) & 7, (word >> 13) & 7, word & 0x3FF


def unpack_outputs(payload: bytes) -> list[tuple[int, int, int, int]]:
    """OUTPUTS answer -> ``[(x, y, neuron, tick16), ...]``."""
    if len(payload) % OUTPUT_BYTES:
        raise ProtocolError(Status.LENGTH, f"OUTPUTS answer of {len(payload)} bytes is not a "
                                           f"multiple of {OUTPUT_BYTES}")
    events = []
    for k in range(0, len(payload), OUTPUT_BYTES):
        neuron, xy, tick = struct.unpack_from("<BBH", payload, k)
        events.append((xy & 7, xy >> 3, neuron, tick))
    return events


def pack_output(x: int, y: int, neuron: int, tick: int) -> bytes:
    return struct.pack("<BBH", neuron, x | y << 3, tick & 0xFFFF)


# ---- INFO and STATUS ----

@dataclass(frozen=True)
class TileInfo:
    """One tile as INFO describes it: the core's shape and the size of every region."""
    axons: int
    neurons: int
    w_bits: int
    v_bits: int
    lanes: int
    events_per_tick: int
    data_bits: int             #: the core's bus width: signed values sign-extend to it
    regions: tuple[int, ...]   #: words in each :class:`Region`, in order

    _FORMAT = "<HHBBBHB" + "I" * len(Region)

    def encode(self) -> bytes:
        return struct.pack(self._FORMAT, self.axons, self.neurons, self.w_bits, self.v_bits,
                           self.lanes, self.events_per_tick, self.data_bits, *self.regions)

    @classmethod
    def decode(cls, data: bytes) -> "TileInfo":
        a, n, w, v, p, e, d, *regions = struct.unpack(cls._FORMAT, data)
        return cls(a, n, w, v, p, e, d, tuple(regions))

    @classmethod
    def size(cls) -> int:
        return struct.calcsize(cls._FORMAT)


@dataclass(frozen=True)
class ChipInfo:
    """What INFO answers: everything the host needs to address the chip."""
    cols: int
    rows: int
    host: tuple[int, int]
    word_bytes: int
    output_depth: int
    tiles: tuple[TileInfo, ...]   #: in tile order, ``y * cols + x``
    version: int = PROTOCOL_VERSION
    magic: bytes = field(default=b"SPKF", repr=False)

    _HEAD = "<4sBBBBBBH"

    def encode(self) -> bytes:
        head = struct.pack(self._HEAD, self.magic, self.version, self.cols, self.rows,
                           self.host[0], self.host[1], self.word_bytes, self.output_depth)
        return head + b"".join(t.encode() for t in self.tiles)

    @classmethod
    def decode(cls, data: bytes) -> "ChipInfo":
        head = struct.calcsize(cls._HEAD)
        if len(data) < head or data[:4] != b"SPKF":
            raise ProtocolError(Status.LENGTH, "not a spikefab INFO answer (bad magic)")
        magic, version, cols, rows, hx, hy, word_bytes, depth = struct.unpack_from(
            cls._HEAD, data)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(Status.LENGTH, f"the chip speaks protocol version {version}; "
                                               f"this driver speaks {PROTOCOL_VERSION}")
        size = TileInfo.size()
        if len(data) != head + cols * rows * size:
            raise ProtocolError(Status.LENGTH, f"INFO answer of {len(data)} bytes does not "
                                               f"describe {cols} x {rows} tiles")
        tiles = tuple(TileInfo.decode(data[head + k * size: head + (k + 1) * size])
                      for k in range(cols * rows))
        return cls(cols, rows, (hx, hy), word_bytes, depth, tiles, version, magic)

    @property
    def max_read_words(self) -> int:
        """Most words one READ may ask for (its answer must fit a frame)."""
        return MAX_PAYLOAD // self.word_bytes

    def tile_index(self, x: int, y: int) -> int:
        if not (0 <= x < self.cols and 0 <= y < self.rows):
            raise ValueError(f"tile ({x}, {y}) is outside the {self.cols} x {self.rows} mesh")
        return y * self.cols + x

    def check_range(self, tile: int, region: int, offset: int, count: int) -> None:
        """Raise :class:`ProtocolError` (ADDRESS) unless the words lie inside the region."""
        if not 0 <= tile < len(self.tiles):
            raise ProtocolError(Status.ADDRESS, f"tile {tile} does not exist "
                                                f"({len(self.tiles)} tiles)")
        if region not in Region.__members__.values():
            raise ProtocolError(Status.ADDRESS, f"region {region} does not exist")
        size = self.tiles[tile].regions[region]
        if not (0 <= offset < size and count <= size - offset):
            raise ProtocolError(Status.ADDRESS, f"words {offset}..{offset + count - 1} are "
                                                f"outside {Region(region).name} of tile {tile} "
                                                f"({size} words)")

    def accepts_event(self, x: int, y: int, axon: int) -> bool:
        return x < self.cols and y < self.rows and axon < self.tiles[y * self.cols + x].axons


@dataclass(frozen=True)
class LinkStatus:
    """What STATUS answers: the chip's and the link's counters (32-bit, wrapping)."""
    ticks: int
    mesh_drops: int
    output_drops: int
    output_pending: int
    frames: int          #: frames received (good or bad)
    bad_frames: int      #: refused before decoding a command: CRC, SHORT, OVERSIZE, ESCAPE
    naks: int            #: every NAK sent, bad frames included
    cycles: int = 0      #: mesh clock cycles since reset (a model without a clock: 0)

    _FORMAT = "<IIIHIIII"

    def encode(self) -> bytes:
        return struct.pack(self._FORMAT, self.ticks, self.mesh_drops, self.output_drops,
                           self.output_pending, self.frames, self.bad_frames, self.naks,
                           self.cycles)

    @classmethod
    def decode(cls, data: bytes) -> "LinkStatus":
        if len(data) != struct.calcsize(cls._FORMAT):
            raise ProtocolError(Status.LENGTH, f"STATUS answer of {len(data)} bytes")
        return cls(*struct.unpack(cls._FORMAT, data))

    @classmethod
    def size(cls) -> int:
        return struct.calcsize(cls._FORMAT)
