"""The host link's formats: command and status codes, the RUN event and OUTPUTS record words,
the frame constants, the commands' payload fields, and the records INFO and STATUS answer with.

The codec that uses them (CRC, SLIP, frames, payloads) is :mod:`spikefab.firmware.protocol`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

from .chip import (AXON_BITS, COORD_BITS, NEURON_BITS, TICK_BITS, CoreShape, Region, pack,
                   unpack)

__all__ = [
    "Command", "Status", "EventWord", "OutputRecord", "pack_event_word", "unpack_event_word",
    "PROTOCOL_VERSION", "END", "ESC", "ESC_END", "ESC_ESC", "CRC_RESIDUE", "MAX_FRAME",
    "OVERHEAD", "MAX_PAYLOAD", "OUTPUT_BYTES", "MAX_OUTPUTS", "ADDRESS", "READ_COUNT",
    "FILL_COUNT", "RUN_TICKS", "EVENT", "INPUT_TILES", "INPUT_HEAD", "RUN_ANSWER", "OUTPUTS_MAX",
    "ADDRESS_BYTES", "MAX_RUN_TICKS", "NO_SEQ", "ENCODE_HEAD", "EncodeFlag", "MAX_REPORT",
    "REPORT_BYTES", "report_outputs", "ENCODER_SHIFTS", "ENCODER_DRAW", "encoder_step",
    "parse_pixel_runs", "EncodeRequest",
    "ProtocolError", "TileInfo", "ChipInfo", "LinkStatus",
]


class Command(enum.IntEnum, shape=8):
    """The command byte of a host-link request."""
    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    FILL = 0x04
    RUN = 0x05
    OUTPUTS = 0x06
    STATUS = 0x07
    RESET = 0x08
    INPUT = 0x09
    ENCODE = 0x0A


class EncodeFlag(enum.IntFlag, shape=8):
    """ENCODE's flags: what it does beside drawing the spikes."""
    CLEAR = 0x01    #: first what RESET does: membranes, accumulators and output queue emptied
    REPORT = 0x02   #: the answer carries the outputs and the reported membranes


class Status(enum.IntEnum, shape=8):
    """The status byte of a host-link response: OK, or why a request was refused (a NAK)."""
    OK = 0x00
    CRC = 0x01       #: the CRC does not match: the frame was corrupted
    SHORT = 0x02     #: fewer than 4 bytes: not even seq, command and CRC
    OVERSIZE = 0x03  #: longer than MAX_FRAME: the rest was not kept
    ESCAPE = 0x04    #: ESC followed by anything but ESC_END or ESC_ESC (END included)
    COMMAND = 0x05   #: unknown command
    LENGTH = 0x06    #: the payload's length is wrong for the command
    ADDRESS = 0x07   #: a tile, region, offset or event outside the chip
    ARGUMENT = 0x08  #: a count or value outside what the command allows
    SEQUENCE = 0x09  #: seq 0: reserved for the NAK of a frame whose seq could not be read

    def describe(self) -> str:
        return _STATUS_TEXT[self]


# ---- words ----

#: An event of a RUN request (two bytes, little-endian): axon ``axon`` of core ``(x, y)``.
EventWord = data.StructLayout({
    "axon": unsigned(AXON_BITS), "x": unsigned(COORD_BITS), "y": unsigned(COORD_BITS)})

#: An output event of an OUTPUTS answer (four bytes, little-endian): neuron, then ``x | y << 3``
#: in one byte, then the tick stamp.
OutputRecord = data.FlexibleLayout(32, {
    "neuron": data.Field(unsigned(NEURON_BITS), 0),
    "x": data.Field(unsigned(COORD_BITS), 8),
    "y": data.Field(unsigned(COORD_BITS), 8 + COORD_BITS),
    "tick": data.Field(unsigned(TICK_BITS), 16),
})


def pack_event_word(x: int, y: int, axon: int) -> int:
    """A RUN request's :data:`EventWord`; ``ValueError`` if a field does not fit."""
    return pack(EventWord, x=x, y=y, axon=axon)


def unpack_event_word(word: int) -> tuple[int, int, int]:
    """``(x, y, axon)`` of a RUN request's :data:`EventWord`."""
    e = unpack(EventWord, word)
    return e["x"], e["y"], e["axon"]


# ---- the host link's frames ----

PROTOCOL_VERSION = 4

#: SLIP (RFC 1055) framing bytes.
END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD

#: Longest frame body (seq, command or status, payload, CRC), in bytes, either way.
MAX_FRAME = 512
#: Bytes around a payload: seq, command/status, CRC.
OVERHEAD = 4
MAX_PAYLOAD = MAX_FRAME - OVERHEAD
OUTPUT_BYTES = OutputRecord.size // 8
#: Most output events one OUTPUTS answer carries.
MAX_OUTPUTS = MAX_PAYLOAD // OUTPUT_BYTES
#: Command payload fields, little-endian (``struct`` formats; the table in
#: :mod:`spikefab.firmware.protocol` says which command carries which).
ADDRESS = struct.Struct("<BBI")      #: WRITE/READ/FILL: tile, region, offset
READ_COUNT = struct.Struct("<H")     #: READ: words to read
FILL_COUNT = struct.Struct("<I")     #: FILL: words to fill
RUN_TICKS = struct.Struct("<H")      #: RUN: ticks to run after injecting
EVENT = struct.Struct("<H")          #: RUN: one :data:`EventWord`
INPUT_TILES = struct.Struct("<Q")    #: INPUT: the tiles it feeds, bit ``y * cols + x``
#: INPUT's fields before its axons: the tiles, then the ticks to run after injecting.
INPUT_HEAD = struct.Struct("<QH")
#: ENCODE's fields before its pixel runs: the tiles, the ticks, the generator's state, the
#: drain ticks, the :class:`EncodeFlag` bits, the tile and the count of the membranes it
#: reports.
ENCODE_HEAD = struct.Struct("<QHIHBBH")
RUN_ANSWER = struct.Struct("<IH")    #: RUN's answer: the chip's tick count, outputs pending
OUTPUTS_MAX = struct.Struct("<H")    #: OUTPUTS: most events to take
#: The bytes of a memory address in WRITE/READ/FILL.
ADDRESS_BYTES = ADDRESS.size
#: Most ticks one RUN or INPUT may ask for (more: ARGUMENT), so that every request is answered
#: in bounded time: a host's timeout can then tell a lost answer from a long run.
MAX_RUN_TICKS = 1024
#: The bytes of a membrane in ENCODE's report: two's complement, v_bits <= 24.
REPORT_BYTES = 3
#: Most membranes one ENCODE may report (they and its answer's head must fit a frame).
MAX_REPORT = (MAX_PAYLOAD - RUN_ANSWER.size) // REPORT_BYTES


def report_outputs(count: int) -> int:
    """Most output events an ENCODE's answer carries beside ``count`` reported membranes."""
    return (MAX_PAYLOAD - RUN_ANSWER.size - REPORT_BYTES * count) // OUTPUT_BYTES


#: ENCODE's spike generator: xorshift32 (Marsaglia 2003) with these shifts, ``x ^= x << a``,
#: ``x ^= x >> b``, ``x ^= x << c``; each draw steps it once and takes its top
#: :data:`ENCODER_DRAW` bits. A linear generator of three shifts and XORs: each next-state bit
#: is the XOR of a few state bits, one or two LUTs deep in the gateware.
ENCODER_SHIFTS = (13, 17, 5)
ENCODER_DRAW = 8
#: The seq of a NAK for a frame too short to carry one; no request may use it (SEQUENCE).
NO_SEQ = 0
#: The CRC register after a whole correct body (seq .. CRC), before the final XOR.
CRC_RESIDUE = 0x1D0F



def encoder_step(state: int) -> int:
    """ENCODE's generator, one step: the next 32-bit state (the draw is its top
    :data:`ENCODER_DRAW` bits). State 0 stays 0 (the chip accepts it: every draw is then 0)."""
    a, b, c = ENCODER_SHIFTS
    state ^= (state << a) & 0xFFFFFFFF
    state ^= state >> b
    state ^= (state << c) & 0xFFFFFFFF
    return state


def parse_pixel_runs(data: bytes) -> list[tuple[int, int]]:
    """ENCODE's pixels: ``[(axon, value), ...]`` in axon order from its runs (the payload
    after :data:`ENCODE_HEAD`). A run is ``skip`` (a byte: axons passed over), ``count`` (a
    byte), then ``count`` value bytes, one for each axon from there on; the first run starts
    at axon 0, each next where the last ended. ``ProtocolError`` (LENGTH) unless the runs end
    exactly where ``data`` does."""
    entries, at, axon = [], 0, 0
    while at < len(data):
        if at + 2 > len(data):
            raise ProtocolError(Status.LENGTH, f"ENCODE's run at byte {at} has no count")
        skip, count = data[at], data[at + 1]
        at += 2
        if at + count > len(data):
            raise ProtocolError(Status.LENGTH, f"ENCODE's run of {count} pixels from axon "
                                               f"{axon + skip} lacks {at + count - len(data)} "
                                               f"values")
        axon += skip
        entries += [(axon + k, data[at + k]) for k in range(count)]
        axon += count
        at += count
    return entries


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
    Status.SEQUENCE: "seq 0 is reserved (requests use 1 to 255)",
}


class ProtocolError(ValueError):
    """A frame or payload that does not follow the protocol; ``status`` says how."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = Status(status)


# ---- INFO and STATUS records ----

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

    @property
    def shape(self) -> CoreShape:
        return CoreShape(self.axons, self.neurons, self.w_bits, self.v_bits,
                         self.events_per_tick)


@dataclass(frozen=True)
class ChipInfo:
    """What INFO answers: everything the host needs to address the chip."""
    cols: int
    rows: int
    host: tuple[int, int]
    word_bytes: int
    output_depth: int
    tiles: tuple[TileInfo, ...]   #: in tile order, ``y * cols + x``
    encoder: bool = False         #: the link draws spikes from pixels (ENCODE)
    #: bytes the link queues ahead of the frame it holds: a host may send that many bytes of
    #: requests beyond the one the chip executes (0: none; send a request only when the last
    #: is answered)
    rx_queue: int = 0
    version: int = PROTOCOL_VERSION
    magic: bytes = field(default=b"SPKF", repr=False)

    #: ... ``output_depth``, then the features (bit 0, :attr:`encoder`), then :attr:`rx_queue`.
    _HEAD = "<4sBBBBBBHBH"
    _FEATURES = 0x01

    def encode(self) -> bytes:
        head = struct.pack(self._HEAD, self.magic, self.version, self.cols, self.rows,
                           self.host[0], self.host[1], self.word_bytes, self.output_depth,
                           int(self.encoder), self.rx_queue)
        return head + b"".join(t.encode() for t in self.tiles)

    @classmethod
    def decode(cls, data: bytes) -> "ChipInfo":
        head = struct.calcsize(cls._HEAD)
        if len(data) < head or data[:4] != b"SPKF":
            raise ProtocolError(Status.LENGTH, "not a spikefab INFO answer (bad magic)")
        if data[4] != PROTOCOL_VERSION:
            raise ProtocolError(Status.LENGTH, f"the chip speaks protocol version {data[4]}; "
                                               f"this driver speaks {PROTOCOL_VERSION}")
        (magic, version, cols, rows, hx, hy, word_bytes, depth, features,
         rx_queue) = struct.unpack_from(cls._HEAD, data)
        if features & ~cls._FEATURES:
            raise ProtocolError(Status.LENGTH, f"INFO names features 0x{features:02x} this "
                                               f"driver does not know")
        size = TileInfo.size()
        if len(data) != head + cols * rows * size:
            raise ProtocolError(Status.LENGTH, f"INFO answer of {len(data)} bytes does not "
                                               f"describe {cols} x {rows} tiles")
        tiles = tuple(TileInfo.decode(data[head + k * size: head + (k + 1) * size])
                      for k in range(cols * rows))
        return cls(cols, rows, (hx, hy), word_bytes, depth, tiles, bool(features & 1),
                   rx_queue, version, magic)

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

    def input_events(self, tiles: int, axons) -> list[tuple[int, int, int]]:
        """The events an INPUT request stands for: axon ``a`` of every tile whose bit is set in
        ``tiles`` (bit ``y * cols + x``), tile by tile in bit order, for each ``a`` of
        ``axons`` in turn. Raises :class:`ProtocolError`: ARGUMENT for no tile, ADDRESS for a
        bit past the last tile or an axon some tile of the set does not have."""
        if tiles == 0:
            raise ProtocolError(Status.ARGUMENT, "INPUT names no tile")
        if tiles >> len(self.tiles):
            raise ProtocolError(Status.ADDRESS, f"INPUT names tiles past the last of "
                                                f"{len(self.tiles)} (mask 0x{tiles:x})")
        places = [(k % self.cols, k // self.cols) for k in range(len(self.tiles))
                  if tiles >> k & 1]
        limit = min(self.tiles[k].axons for k in range(len(self.tiles)) if tiles >> k & 1)
        events = []
        for axon in axons:
            if not 0 <= axon < limit:
                raise ProtocolError(Status.ADDRESS, f"input axon {axon}: a tile of the set has "
                                                    f"{limit} axons")
            events += [(x, y, axon) for x, y in places]
        return events

    def encode_events(self, payload: bytes) -> "EncodeRequest":
        """What an ENCODE request stands for (:class:`EncodeRequest`). Each of its ``ticks``
        ticks, the generator (:func:`encoder_step`, from the request's ``state``) steps once
        for each pixel of the runs, in axon order; the pixel spikes iff the draw (the
        state's top :data:`ENCODER_DRAW` bits) is below its value, and a spike is its axon's
        event on every tile of ``tiles``, as INPUT's are (the pixels:
        :func:`parse_pixel_runs`). Raises :class:`ProtocolError` for what the chip refuses,
        in the chip's order: LENGTH (no room for the head), ARGUMENT
        (no tile, too many ticks), ADDRESS (a tile past the last), ARGUMENT (too many drain
        ticks, an unknown flag, a report of no membrane or of more than :data:`MAX_REPORT`),
        ADDRESS (a report of membranes the tile lacks), LENGTH (runs that do not end with
        the payload), ADDRESS (an axon some tile of the set lacks)."""
        if not self.encoder:
            raise ProtocolError(Status.COMMAND, "this chip has no encoder (INFO's features)")
        if len(payload) < ENCODE_HEAD.size:
            raise ProtocolError(Status.LENGTH, f"ENCODE payload of {len(payload)} bytes")
        tiles, ticks, state, drain, flags, tile, count = ENCODE_HEAD.unpack_from(payload)
        if tiles == 0:
            raise ProtocolError(Status.ARGUMENT, "ENCODE names no tile")
        if ticks > MAX_RUN_TICKS:
            raise ProtocolError(Status.ARGUMENT, f"ENCODE of {ticks} ticks")
        if tiles >> len(self.tiles):
            raise ProtocolError(Status.ADDRESS, f"ENCODE names tiles past the last of "
                                                f"{len(self.tiles)} (mask 0x{tiles:x})")
        if drain > MAX_RUN_TICKS:
            raise ProtocolError(Status.ARGUMENT, f"ENCODE of {drain} drain ticks")
        if flags & ~int(EncodeFlag.CLEAR | EncodeFlag.REPORT):
            raise ProtocolError(Status.ARGUMENT, f"ENCODE flags 0x{flags:02x}")
        report = bool(flags & EncodeFlag.REPORT)
        if report and not 1 <= count <= MAX_REPORT:
            raise ProtocolError(Status.ARGUMENT, f"ENCODE reporting {count} membranes")
        if report and (tile >= len(self.tiles) or count > self.tiles[tile].neurons):
            raise ProtocolError(Status.ADDRESS, f"ENCODE reporting {count} membranes of tile "
                                                f"{tile}")
        entries = parse_pixel_runs(payload[ENCODE_HEAD.size:])
        self.input_events(tiles, [axon for axon, _ in entries])   # ADDRESS for a missing axon
        places = [(k % self.cols, k // self.cols) for k in range(len(self.tiles))
                  if tiles >> k & 1]
        shift = 32 - ENCODER_DRAW
        events, x = [], state
        for _ in range(ticks):
            tick = []
            for axon, value in entries:
                x = encoder_step(x)
                if x >> shift < value:
                    tick += [(px, py, axon) for px, py in places]
            events.append(tick)
        return EncodeRequest(ticks, drain, bool(flags & EncodeFlag.CLEAR),
                             (tile, count) if report else None, events)


@dataclass(frozen=True)
class EncodeRequest:
    """An ENCODE, checked (:meth:`ChipInfo.encode_events`): first what RESET does if
    ``clear``; then ``ticks`` ticks, ``events[t]`` injected before tick ``t``; then ``drain``
    ticks without input. Answered as RUN is, and with ``report`` (a ``(tile, count)``) also
    with the first :func:`report_outputs` ``(count)`` output events pending and the
    membranes of neurons ``0 .. count - 1`` of that tile, :data:`REPORT_BYTES` each."""
    ticks: int
    drain: int
    clear: bool
    report: tuple[int, int] | None
    events: list


@dataclass(frozen=True)
class LinkStatus:
    """What STATUS answers: the chip's counters (32 bits) and the link's (16 bits: frames,
    bad frames, NAKs, line errors), each wrapping at its width."""
    ticks: int
    mesh_drops: int
    output_drops: int
    output_pending: int
    frames: int          #: frames received (good or bad)
    bad_frames: int      #: refused before decoding a command: CRC, SHORT, OVERSIZE, ESCAPE
    naks: int            #: every NAK sent, bad frames included
    cycles: int = 0      #: mesh clock cycles since reset (a model without a clock: 0)
    line_errors: int = 0  #: bytes the UART lost: framing errors and overruns (a model: 0)

    _FORMAT = "<IIIHHHHIH"

    def encode(self) -> bytes:
        return struct.pack(self._FORMAT, self.ticks, self.mesh_drops, self.output_drops,
                           self.output_pending, self.frames, self.bad_frames, self.naks,
                           self.cycles, self.line_errors)

    @classmethod
    def decode(cls, data: bytes) -> "LinkStatus":
        if len(data) != struct.calcsize(cls._FORMAT):
            raise ProtocolError(Status.LENGTH, f"STATUS answer of {len(data)} bytes")
        return cls(*struct.unpack(cls._FORMAT, data))

    @classmethod
    def size(cls) -> int:
        return struct.calcsize(cls._FORMAT)
