"""A checking client of the golden chip behind the host link (``sim/link_model.py``), for the
tests of ``test_link_model.py`` and ``test_link_model_naks.py``: the small two-tile chip they
talk to, frame helpers, and :class:`Client`, which keeps its own account of the link's counters.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

from conftest import record_checked
from spikefab.firmware.protocol import (SlipDecoder, crc16, frame, parse_body, slip_encode,
                                        unpack_outputs)
from spikefab.hdl.abi import (ENCODE_HEAD, END, ESC, MAX_OUTPUTS, ChipInfo, Command, CoreShape,
                              EncodeFlag, LinkStatus, Region, Status, pack_event_word)
from spikefab.hdl.chip import TileConfig
from spikefab.hdl.host_link import chip_info
from spikefab.sim.link_model import LinkModel

#: The chip every LinkModel test talks to: tile (0, 0) has 8 axons x 4 neurons in 4 lanes,
#: tile (1, 0) 4 axons x 3 neurons in 2 lanes; 8-bit weights, 16-bit membranes.
INFO = chip_info(cols=2, rows=1, host=(0, 0),
                 tiles={(0, 0): TileConfig(CoreShape(8, 4), lanes=4),
                        (1, 0): TileConfig(CoreShape(4, 3), lanes=2)},
                 output_depth=16)
WB = INFO.word_bytes
WORD_MASK = (1 << (8 * WB)) - 1
TILES = range(len(INFO.tiles))
SHAPES = [CoreShape(t.axons, t.neurons, t.w_bits, t.v_bits, t.events_per_tick)
          for t in INFO.tiles]
TO_HOST = 1 << 21
HEADER = "<BBI"   # tile, region, offset

#: What the link model tests tried, summed over their tests.
CHECKED: Counter = Counter()


def tally(name: str, **counts: int) -> None:
    CHECKED.update(counts)
    record_checked(f"protocol-{name}", **counts)


def signed_value(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def crc_body(seq: int, code: int, payload: bytes = b"") -> bytes:
    """A frame body with its CRC (no length limit, unlike ``frame``)."""
    head = bytes([seq, code]) + bytes(payload)
    return head + (crc16(head) ^ 0xFFFF).to_bytes(2, "big")


def slip_inner(body: bytes) -> bytes:
    return slip_encode(body)[1:-1]


# ==== the host side of the tests: a checking client ====

class Client:
    """A host talking to a LinkModel. Checks every response's framing and seq, and keeps the
    tally of frames, bad frames and NAKs that every STATUS answer is checked against."""

    def __init__(self, info: ChipInfo = INFO):
        self.info = info
        self.link = LinkModel(info)
        self.seq = 0
        self.frames = self.bad_frames = self.naks = 0

    def exchange(self, wire: bytes) -> list[tuple[int, int, bytes]]:
        out = self.link.receive(wire)
        responses = []
        for body, error in SlipDecoder().feed(out):
            assert error is None
            responses.append(parse_body(body))
        # Exactly the canonical encoding (END first and last, nothing in between).
        assert out == b"".join(frame(*r) for r in responses)
        return responses

    def next_seq(self) -> int:
        self.seq = self.seq % 255 + 1
        return self.seq

    def request(self, command: int, payload: bytes = b"") -> tuple[Status, bytes]:
        seq = self.next_seq()
        [(rseq, status, answer)] = self.exchange(frame(seq, command, payload))
        assert rseq == seq
        self.frames += 1
        if status != Status.OK:
            self.naks += 1
            assert answer == bytes([command]), "a NAK echoes the command byte"
        return Status(status), answer

    def ok(self, command: int, payload: bytes = b"") -> bytes:
        status, answer = self.request(command, payload)
        assert status is Status.OK, f"{command!r} answered {status.name}"
        return answer

    def nak(self, command: int, payload: bytes, expected: Status) -> None:
        status, _ = self.request(command, payload)
        assert status is expected, (f"{command!r} {payload.hex()}: expected {expected.name}, "
                                    f"got {status.name}")

    def bad_frame(self, wire: bytes, expected: Status, seq: int, echo: int, *,
                  bad: bool = True) -> None:
        """Send raw bytes holding one frame that must be refused."""
        responses = self.exchange(wire)
        assert responses == [(seq, expected, bytes([echo]))], responses
        self.frames += 1
        self.naks += 1
        self.bad_frames += bad

    # ---- commands ----
    def write(self, tile, region, offset, words) -> None:
        for k in range(0, len(words), 100):
            self.ok(Command.WRITE, struct.pack(HEADER, tile, region, offset + k)
                    + b"".join(w.to_bytes(WB, "little") for w in words[k:k + 100]))

    def read(self, tile, region, offset, count) -> list[int]:
        words = []
        for k in range(0, count, self.info.max_read_words):
            n = min(self.info.max_read_words, count - k)
            answer = self.ok(Command.READ, struct.pack(HEADER + "H", tile, region, offset + k, n))
            assert len(answer) == n * WB
            words += [int.from_bytes(answer[i:i + WB], "little") for i in range(0, len(answer), WB)]
        return words

    def fill(self, tile, region, offset, count, word) -> None:
        self.ok(Command.FILL, struct.pack(HEADER + "I", tile, region, offset, count)
                + word.to_bytes(WB, "little"))

    def run(self, ticks, events=()) -> tuple[int, int]:
        answer = self.ok(Command.RUN, struct.pack(f"<H{len(events)}H", ticks,
                                                  *(pack_event_word(*e) for e in events)))
        return struct.unpack("<IH", answer)

    def outputs(self, most=MAX_OUTPUTS) -> list[tuple[int, int, int]]:
        """``(neuron, x | y << 3, tick16)`` of each output event, as sent."""
        answer = self.ok(Command.OUTPUTS, struct.pack("<H", most))
        assert len(answer) % 4 == 0 and len(answer) // 4 <= most
        events = list(struct.iter_unpack("<BBH", answer))
        assert unpack_outputs(answer) == [(xy & 7, xy >> 3, n, t) for n, xy, t in events]
        return events

    def status(self) -> LinkStatus:
        status = LinkStatus.decode(self.ok(Command.STATUS))
        assert (status.frames, status.bad_frames, status.naks) == \
               (self.frames, self.bad_frames, self.naks)
        return status

    def region(self, tile, region) -> list[int]:
        return self.read(tile, region, 0, self.info.tiles[tile].regions[region])

    def snapshot(self):
        """Every word of every region of every tile, STATUS but its frame counters, and the
        queued outputs."""
        memories = tuple(tuple(self.region(k, r)) for k in range(len(self.info.tiles))
                         for r in Region)
        s = self.status()
        return memories, (s.ticks, s.mesh_drops, s.output_drops, s.output_pending), \
            tuple(self.link.outputs)


EDGE_WORDS = [0, 1, 2, 3, 15, 16, 17, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x400, 0x7FF, 0x800,
              0x7FFE, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x10000, 0x1FFFFF, 0x200000, 0x3FFFFF,
              0x400000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def random_word(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.3:
        return rng.getrandbits(8 * WB)
    if r < 0.55:
        return rng.choice(EDGE_WORDS) & WORD_MASK
    if r < 0.7:
        return rng.getrandbits(rng.randint(1, 8 * WB))
    if r < 0.85:
        return rng.randint(-40_000, 40_000) & WORD_MASK
    return rng.randint(0, 40)


def random_route_index(rng: random.Random) -> int:
    return rng.randrange(1024) | rng.randint(0, 2) << 10 | rng.choice((0, TO_HOST))


def safe_route_dest(rng: random.Random) -> int:
    """A route destination outside the 2 x 1 mesh (x >= 2): spikes routed there are dropped
    and counted (mesh drops), so a random state's ticks stay within every core's budget."""
    return (rng.getrandbits(8 * WB) & ~7) | rng.randint(2, 7)


def random_state(client: Client, rng: random.Random) -> None:
    """Random memories in every region of every tile, a few ticks run, outputs queued."""
    for k in TILES:
        shape = SHAPES[k]
        for region in Region:
            size = INFO.tiles[k].regions[region]
            if region == Region.REGISTER:
                words = [rng.randint(1, 300), rng.randint(0, 3), rng.randint(0, 1)] + \
                        [rng.getrandbits(32) for _ in range(5)]
            elif region == Region.ROUTE_INDEX:
                words = [rng.randrange(1024) | rng.randint(0, 3) << 10
                         | rng.choice((0, TO_HOST, TO_HOST)) | rng.getrandbits(8) << 24
                         for _ in range(size)]
            elif region == Region.ROUTE_DEST:
                words = [safe_route_dest(rng) for _ in range(size)]
            elif region == Region.BIAS:
                words = [rng.randint(-100, 200) & WORD_MASK for _ in range(size)]
            else:
                words = [random_word(rng) for _ in range(size)]
            client.write(k, region, 0, words)
        assert client.read(k, Region.REGISTER, 0, 1)[0] <= shape.v_max
    # Neuron 0 of tile (0, 0) starts at v_max and reports to the host: whatever the weights,
    # biases and accumulators, it spikes in the first tick, so outputs are queued.
    client.write(0, Region.MEMBRANE, 0, [SHAPES[0].v_max])
    client.write(0, Region.ROUTE_INDEX, 0, [client.read(0, Region.ROUTE_INDEX, 0, 1)[0] | TO_HOST])
    for _ in range(3):
        client.run(rng.randint(1, 4), random_events(rng))
    # Leave something in the accumulators of the current tick.
    for k in TILES:
        client.write(k, Region.ACCUMULATOR, 0,
                     [rng.randint(1, 200) for _ in range(INFO.tiles[k].neurons)])
    client.run(0, random_events(rng))


def random_events(rng: random.Random, n: int | None = None) -> list[tuple[int, int, int]]:
    n = rng.randint(0, 6) if n is None else n
    events = []
    for _ in range(n):
        k = rng.choice(TILES)
        events.append((k % INFO.cols, k // INFO.cols, rng.randrange(INFO.tiles[k].axons)))
    return events


def mutate(rng: random.Random, wire: bytes) -> bytes:
    """A frame as a bad line or a bad host delivers it: bits flipped, a byte dropped or
    doubled, cut short, a bad escape, an END inside, garbage run into it (its leading END
    lost), or the head of it joined to a tail of it."""
    data = bytearray(wire)
    kind = rng.choice(["flip", "flip", "flip", "drop", "duplicate", "truncate", "escape",
                       "split", "garbage", "splice"])
    inner = rng.randrange(1, len(data) - 1)
    if kind == "flip":
        for _ in range(rng.choice([1, 1, 2, 3, 8])):
            data[rng.randrange(1, len(data) - 1)] ^= 1 << rng.randrange(8)
    elif kind == "drop":
        del data[inner]
    elif kind == "duplicate":
        data.insert(inner, data[inner])
    elif kind == "truncate":
        data = data[:inner] + bytes([END])
    elif kind == "escape":
        data[inner:inner] = bytes([ESC, rng.choice([0x00, 0x42, END, ESC, 0xDC])])
    elif kind == "split":
        data.insert(inner, END)
    elif kind == "garbage":   # before the frame, with its leading END lost
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 12))) + bytes(data[1:])
    else:
        data = data[:inner] + bytes(data[rng.randrange(1, len(data) - 1):])
    return bytes(data)


def random_pixels(rng: random.Random, limit: int) -> list[int]:
    """Pixels for an ENCODE to tiles of ``limit`` axons: mostly zero (not sent), some 0 < p <
    256, a few the full 255. Every pixel sent is below ``limit``."""
    pixels = [0] * rng.randint(0, limit)
    for k in range(len(pixels)):
        roll = rng.random()
        if roll < 0.3:
            pixels[k] = rng.randint(1, 255)
        elif roll < 0.35:
            pixels[k] = 255
    return pixels


def random_runs(rng: random.Random, limit: int) -> bytes:
    """ENCODE's runs as any host may send them, not only as ``pixel_runs`` makes them: zero
    values inside runs (they draw, and never spike), runs of no pixels, runs back to back.
    Every pixel sent is below ``limit``."""
    out, axon = bytearray(), 0
    while rng.random() < 0.85:
        skip = rng.randint(0, 6)
        count = rng.randint(0, 5)
        if axon + skip + count > limit:
            break
        values = [rng.choice([0, 255, rng.randint(1, 254)]) for _ in range(count)]
        out += bytes([skip, count] + values)
        axon += skip + count
    return bytes(out)


def random_encode(rng: random.Random, info: ChipInfo, *, most_ticks: int = 2) -> bytes:
    """An ENCODE payload the chip accepts: any tiles, ticks, drain, state and flags (a report
    of any of a tile's membranes), and :func:`random_runs`."""
    tiles = rng.randint(1, (1 << len(info.tiles)) - 1)
    limit = min(info.tiles[k].axons for k in range(len(info.tiles)) if tiles >> k & 1)
    flags = rng.choice([0, 0, EncodeFlag.CLEAR, EncodeFlag.REPORT,
                        EncodeFlag.CLEAR | EncodeFlag.REPORT])
    tile = rng.randrange(len(info.tiles))
    count = rng.randint(1, info.tiles[tile].neurons) if flags & EncodeFlag.REPORT else 0
    return ENCODE_HEAD.pack(tiles, rng.randint(0, most_ticks), rng.getrandbits(32),
                            rng.randint(0, 2), flags, tile, count) + random_runs(rng, limit)
