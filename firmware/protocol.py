"""The host link's wire protocol, as host code speaks it: used by the driver, the link model and
the board stand-ins; the gateware (``hdl/host_link.py``) is its other end.

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
without it the residue is 0, and zero bytes appended to a frame would still check. Every
request gets exactly one response with the request's ``seq``: ``status`` is
:attr:`Status.OK` with the command's answer as payload, or a NAK reason (:class:`Status`) with
the request's command byte as payload. A request that is not answered OK changed nothing. All
multi-byte integers are little-endian, except the CRC.

**Sequence numbers and repeats.** A request's ``seq`` is 1 to 255: 0 (:data:`~spikefab.hdl.abi.NO_SEQ`) is the
``seq`` of the NAK for a frame so broken that its ``seq`` is unknown (too short), and a request
carrying it is refused (``SEQUENCE``). The chip remembers the ``seq`` and command of the last
request it answered OK. A request with the same ``seq`` and command (the same request, sent
again because its answer was lost) is a **repeat**: it is answered as the first time without being
executed again: WRITE, FILL and RESET answer OK, RUN and INPUT the tick count and pending
outputs (unchanged since), OUTPUTS the same events again; INFO, READ and STATUS, which change
nothing, are executed afresh. STATUS counts repeats. A host therefore sends each new request
with a new ``seq`` (the driver counts 1 to 255 and round again) and repeats one only with its
own ``seq``; a new session begins with a request that changes nothing (the driver's INFO),
in case the chip's last request had the ``seq`` and command of its first.

**Timeout.** A frame left half sent (a host that stopped mid-frame, an ``END`` lost on the
line) is dropped, without an answer, once the line has been silent for the chip's inter-byte
timeout (tens of milliseconds on a board); STATUS counts these. So is the half frame a host
leaves when it omits the leading ``END``, as long as it pauses before its next frame.

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
INPUT             tiles (u64), ticks (u16), axon (u16) x n           ticks (u32), pending (u16)
ENCODE            tiles (u64), ticks (u16), state (u32), drain (u16),  ticks (u32), pending (u16)
                  flags (u8), tile (u8), count (u16), runs           [, output x k, v x count]
OUTPUTS           max (u16)                                          output (4 bytes) x k
STATUS            (none)                                             :class:`LinkStatus` bytes
RESET             (none)                                             (none)
================  =================================================  ==========================

* ``tile`` is ``y * cols + x``; ``region`` is a :class:`Region`; ``offset`` counts words from
  the region's start; every word addressed must lie inside the region, else ``ADDRESS``.
* RUN injects its events into the current tick, then runs ``ticks`` ticks (0 = inject only,
  at most :data:`~spikefab.hdl.abi.MAX_RUN_TICKS`, else ``ARGUMENT``), and answers when the chip is quiet (every
  output of the last update is queued) with the chip's tick count and the number of output
  events waiting. An event is an
  :data:`~spikefab.hdl.abi.EventWord`; one for a missing tile or axon gets ``ADDRESS`` (and
  none of the frame's events is injected).
* INPUT is the RUN of the events its axons stand for: axon ``a`` of every tile whose bit
  ``y * cols + x`` is set in ``tiles``, tile by tile in bit order, for each axon in turn
  (:meth:`~spikefab.hdl.abi.ChipInfo.input_events`). It carries a network's input to every
  core of its first layer at one axon per spike on the wire. No tile is ``ARGUMENT``; a bit
  past the last tile, or an axon that a tile of the set lacks, is ``ADDRESS`` (nothing
  injected).
* ENCODE (a chip whose INFO names the encoder; else ``COMMAND``) draws an image's spikes on
  the chip: ``ticks`` ticks, before each of which every pixel of the runs draws from the
  generator (``state`` its start) and spikes as INPUT's axon would
  (:meth:`~spikefab.hdl.abi.ChipInfo.encode_events` defines every bit). A run is a byte of
  axons passed over, a byte ``count``, then ``count`` pixel values for the axons from there
  on (:func:`~spikefab.hdl.abi.parse_pixel_runs`): for an MNIST image, about 210 bytes (a
  bitmap of the pixels sent and their values: about 245). INPUT's checks apply to the tiles
  and the ticks; runs that do not end with the payload are ``LENGTH``, an axon a tile lacks
  ``ADDRESS`` (nothing injected). Then ``drain`` ticks without input (at most
  :data:`~spikefab.hdl.abi.MAX_RUN_TICKS`). Flags (:class:`~spikefab.hdl.abi.EncodeFlag`):
  ``CLEAR`` does first what RESET does; ``REPORT`` adds to the answer the first
  :func:`~spikefab.hdl.abi.report_outputs` ``(count)`` pending output events, taken as
  OUTPUTS takes them, and the membranes of neurons ``0 .. count - 1`` of ``tile`` (1 to
  :data:`~spikefab.hdl.abi.MAX_REPORT` of them, ``ADDRESS`` past the tile's neurons),
  :data:`~spikefab.hdl.abi.REPORT_BYTES` bytes each, two's complement. ``tile`` and ``count``
  mean nothing without ``REPORT``. With both flags, one request runs a whole image: its
  answer is all the host needs, and sent again it gives the same answer.
* OUTPUTS takes up to ``max`` output events off the chip's output queue (oldest first), each
  an :data:`~spikefab.hdl.abi.OutputRecord`; ``max`` is at most :data:`MAX_OUTPUTS`. The events
  it answers with stay in the queue, no longer pending, until the next request that passes
  its checks and is not its repeat: a repeated OUTPUTS answers them again.
* RESET zeroes every membrane and accumulator and empties the output queue; weights,
  parameters, routes and counters stay.

The formats named here (commands, statuses, regions, registers, the event and output words,
the INFO and STATUS records, the frame constants) are defined in :mod:`spikefab.hdl.abi`; this
module is the codec: CRC, SLIP and frames. It imports no simulator and no gateware, so the
driver layer can be tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hdl.abi import (ADDRESS, ADDRESS_BYTES, CRC_RESIDUE, ENCODE_HEAD, END, ESC, ESC_END,
                       ESC_ESC, EVENT, REPORT_BYTES, EncodeFlag,
                       FILL_COUNT, INPUT_HEAD, MAX_FRAME, MAX_PAYLOAD, OUTPUT_BYTES, OUTPUTS_MAX,
                       OVERHEAD, READ_COUNT, RUN_ANSWER, RUN_TICKS, TICK_BITS, Command, OutputRecord,
                       ProtocolError, Status, pack, pack_event_word, unpack, unpack_event_word)

__all__ = ["crc16", "slip_encode", "SlipDecoder", "frame", "parse_body", "MemoryRequest",
           "write_payload", "read_payload", "fill_payload", "parse_memory_request",
           "run_payload", "parse_run", "EVENTS_PER_RUN", "input_payload", "parse_input",
           "AXONS_PER_INPUT", "pixel_runs", "encode_payload", "parse_encode_answer",
           "run_answer",
           "parse_run_answer",
           "outputs_payload", "parse_outputs_request", "pack_outputs", "unpack_outputs"]


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
    :attr:`pending` says whether a frame is half received; :meth:`discard` drops it.
    """

    def __init__(self, max_frame: int = MAX_FRAME):
        self.max_frame = max_frame
        self._body = bytearray()
        self._escaped = False
        self._error = None

    @property
    def pending(self) -> bool:
        """Bytes of a frame not yet ended have been received."""
        return bool(self._body) or self._escaped or self._error is not None

    def discard(self) -> None:
        """Forget the frame being received (as the chip does when the line falls silent)."""
        self._body.clear()
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


# ---- payloads ----

@dataclass(frozen=True)
class MemoryRequest:
    """A WRITE, READ or FILL request as the chip reads it: ``count`` words from ``offset`` of
    ``region`` on ``tile``; ``words`` are the words to write (FILL: ``count`` copies of one)."""
    command: Command
    tile: int
    region: int
    offset: int
    count: int
    words: tuple[int, ...] = ()


def write_payload(tile: int, region: int, offset: int, words, word_bytes: int) -> bytes:
    """A WRITE of ``words`` (``word_bytes`` each) from ``offset``."""
    return ADDRESS.pack(tile, region, offset) + b"".join(
        int(w).to_bytes(word_bytes, "little") for w in words)


def read_payload(tile: int, region: int, offset: int, count: int) -> bytes:
    return ADDRESS.pack(tile, region, offset) + READ_COUNT.pack(count)


def fill_payload(tile: int, region: int, offset: int, count: int, word: int,
                 word_bytes: int) -> bytes:
    return (ADDRESS.pack(tile, region, offset) + FILL_COUNT.pack(count)
            + int(word).to_bytes(word_bytes, "little"))


def parse_memory_request(command: Command, payload: bytes, word_bytes: int) -> MemoryRequest:
    """The request a WRITE/READ/FILL payload carries; ``ProtocolError`` (LENGTH) when its length
    is wrong for the command. Ranges are the receiver's to check."""
    command = Command(command)
    need = {Command.WRITE: ADDRESS_BYTES + word_bytes,
            Command.READ: ADDRESS_BYTES + READ_COUNT.size,
            Command.FILL: ADDRESS_BYTES + FILL_COUNT.size + word_bytes}[command]
    if (len(payload) < need or (command is not Command.WRITE and len(payload) != need)
            or (command is Command.WRITE and (len(payload) - ADDRESS_BYTES) % word_bytes)):
        raise ProtocolError(Status.LENGTH, f"{command.name} payload of {len(payload)} bytes")
    tile, region, offset = ADDRESS.unpack_from(payload)
    if command is Command.WRITE:
        words = tuple(int.from_bytes(payload[k:k + word_bytes], "little")
                      for k in range(ADDRESS_BYTES, len(payload), word_bytes))
        return MemoryRequest(command, tile, region, offset, len(words), words)
    if command is Command.READ:
        (count,) = READ_COUNT.unpack_from(payload, ADDRESS_BYTES)
        return MemoryRequest(command, tile, region, offset, count)
    (count,) = FILL_COUNT.unpack_from(payload, ADDRESS_BYTES)
    word = int.from_bytes(payload[ADDRESS_BYTES + FILL_COUNT.size:], "little")
    return MemoryRequest(command, tile, region, offset, count, (word,))


#: Most events one RUN request carries.
EVENTS_PER_RUN = (MAX_PAYLOAD - RUN_TICKS.size) // EVENT.size


def run_payload(ticks: int, events=()) -> bytes:
    """A RUN: inject ``events`` (``(x, y, axon)`` each), then run ``ticks`` ticks."""
    return RUN_TICKS.pack(ticks) + b"".join(
        EVENT.pack(pack_event_word(x, y, axon)) for x, y, axon in events)


def parse_run(payload: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """``(ticks, [(x, y, axon), ...])`` of a RUN payload; ``ProtocolError`` (LENGTH) if it is
    not a tick count and whole events."""
    if len(payload) < RUN_TICKS.size or (len(payload) - RUN_TICKS.size) % EVENT.size:
        raise ProtocolError(Status.LENGTH, f"RUN payload of {len(payload)} bytes")
    (ticks,) = RUN_TICKS.unpack_from(payload)
    events = [unpack_event_word(w) for (w,) in EVENT.iter_unpack(payload[RUN_TICKS.size:])]
    return ticks, events


#: Most axons one INPUT request carries.
AXONS_PER_INPUT = (MAX_PAYLOAD - INPUT_HEAD.size) // EVENT.size


def input_payload(tiles: int, ticks: int, axons=()) -> bytes:
    """An INPUT: each of ``axons`` to every tile of the bit set ``tiles``, then ``ticks``
    ticks."""
    return INPUT_HEAD.pack(tiles, ticks) + b"".join(EVENT.pack(a) for a in axons)


def parse_input(payload: bytes) -> tuple[int, int, list[int]]:
    """``(tiles, ticks, [axon, ...])`` of an INPUT payload; ``ProtocolError`` (LENGTH) if it
    is not the tiles, a tick count and whole axons."""
    if len(payload) < INPUT_HEAD.size or (len(payload) - INPUT_HEAD.size) % EVENT.size:
        raise ProtocolError(Status.LENGTH, f"INPUT payload of {len(payload)} bytes")
    tiles, ticks = INPUT_HEAD.unpack_from(payload)
    return tiles, ticks, [a for (a,) in EVENT.iter_unpack(payload[INPUT_HEAD.size:])]


def pixel_runs(pixels) -> bytes:
    """ENCODE's runs for ``pixels`` (one value 0-255 per axon, from axon 0): each stretch of
    non-zero pixels a run (skip, count, values), zero pixels left out (a gap of more than 255
    is passed over by runs of none, a stretch of more than 255 split)."""
    values = bytes(int(v) for v in pixels)
    out = bytearray()
    at = 0          # where the last run ended
    k = 0
    while k < len(values):
        if not values[k]:
            k += 1
            continue
        end = k
        while end < len(values) and values[end] and end - k < 255:
            end += 1
        skip = k - at
        while skip > 255:
            out += bytes([255, 0])
            skip -= 255
        out += bytes([skip, end - k]) + values[k:end]
        at = k = end
    return bytes(out)


def encode_payload(tiles: int, ticks: int, state: int, pixels, *, drain: int = 0,
                   clear: bool = False, report: tuple[int, int] | None = None) -> bytes:
    """An ENCODE: ``ticks`` ticks of the spikes the chip draws for ``pixels`` from the
    generator state ``state``, each spike an axon of every tile of the bit set ``tiles``; then
    ``drain`` ticks; ``clear`` first, and ``report`` ``(tile, count)`` membranes."""
    flags = (EncodeFlag.CLEAR if clear else 0) | (EncodeFlag.REPORT if report else 0)
    tile, count = report or (0, 0)
    return (ENCODE_HEAD.pack(tiles, ticks, state, drain, flags, tile, count)
            + pixel_runs(pixels))


def parse_encode_answer(payload: bytes, count: int):
    """``(ticks, pending, outputs, membranes)`` of the answer to an ENCODE that reported
    ``count`` membranes (``outputs``: as :func:`unpack_outputs`; ``membranes``: signed)."""
    head = RUN_ANSWER.size
    v_bytes = REPORT_BYTES * count
    if len(payload) < head + v_bytes or (len(payload) - head - v_bytes) % OUTPUT_BYTES:
        raise ProtocolError(Status.LENGTH, f"an ENCODE answer of {len(payload)} bytes for "
                                           f"{count} membranes")
    ticks, pending = RUN_ANSWER.unpack_from(payload)
    tail = payload[len(payload) - v_bytes:]
    bits = 8 * REPORT_BYTES
    membranes = [int.from_bytes(tail[k:k + REPORT_BYTES], "little") for k in
                 range(0, v_bytes, REPORT_BYTES)]
    membranes = [v - (1 << bits) if v >> (bits - 1) else v for v in membranes]
    return ticks, pending, unpack_outputs(payload[head:len(payload) - v_bytes]), membranes


def run_answer(ticks: int, pending: int) -> bytes:
    """RUN's answer: the chip's tick count (wrapping at 32 bits) and the outputs waiting."""
    return RUN_ANSWER.pack(ticks & 0xFFFF_FFFF, pending)


def parse_run_answer(payload: bytes) -> tuple[int, int]:
    if len(payload) != RUN_ANSWER.size:
        raise ProtocolError(Status.LENGTH, f"RUN answer of {len(payload)} bytes")
    return RUN_ANSWER.unpack(payload)


def outputs_payload(most: int) -> bytes:
    return OUTPUTS_MAX.pack(most)


def parse_outputs_request(payload: bytes) -> int:
    if len(payload) != OUTPUTS_MAX.size:
        raise ProtocolError(Status.LENGTH, f"OUTPUTS payload of {len(payload)} bytes")
    return OUTPUTS_MAX.unpack(payload)[0]


# ---- outputs ----

def unpack_outputs(payload: bytes) -> list[tuple[int, int, int, int]]:
    """OUTPUTS answer -> ``[(x, y, neuron, tick16), ...]``."""
    if len(payload) % OUTPUT_BYTES:
        raise ProtocolError(Status.LENGTH, f"OUTPUTS answer of {len(payload)} bytes is not a "
                                           f"multiple of {OUTPUT_BYTES}")
    events = []
    for k in range(0, len(payload), OUTPUT_BYTES):
        o = unpack(OutputRecord, int.from_bytes(payload[k:k + OUTPUT_BYTES], "little"))
        events.append((o["x"], o["y"], o["neuron"], o["tick"]))
    return events


def pack_outputs(events) -> bytes:
    """``[(x, y, neuron, tick), ...]`` as an OUTPUTS answer (ticks wrap to 16 bits)."""
    return b"".join(
        pack(OutputRecord, x=x, y=y, neuron=neuron, tick=tick & ((1 << TICK_BITS) - 1))
        .to_bytes(OUTPUT_BYTES, "little") for x, y, neuron, tick in events)
