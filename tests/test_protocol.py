"""The host link's wire protocol (``firmware/protocol.py``) and the golden model of a chip behind
it (``sim/link_model.py``): the CRC, SLIP framing, the receiver under corruption, every
command's semantics and every NAK, on a small two-tile chip.

Randomized parts use hypothesis with ``derandomize=True`` or ``random.Random`` seeded from
``BASE_SEED`` (``SPIKEFAB_TEST_SEED``); what was tried is tallied with ``record_checked`` and
printed by the last test.
"""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from conftest import BASE_SEED, record_checked
from spikefab.firmware.protocol import SlipDecoder, crc16, frame, parse_body, slip_encode, unpack_outputs
from spikefab.hdl.abi import (ADDRESS_BYTES, CRC_RESIDUE, END, ESC, ESC_END, ESC_ESC, MAX_FRAME,
                              MAX_OUTPUTS, MAX_PAYLOAD, REGISTERS, ChipInfo, Command, CoreShape,
                              LinkStatus, ProtocolError, Region, Register, Status, pack_event_word,
                              unpack_event_word)
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
THRESHOLD, LEAK, RESET_MODE, EVENTS, SOPS, TICKS, DROP_RANGE, DROP_BUDGET = range(8)
TO_HOST = 1 << 21
HEADER = "<BBI"   # tile, region, offset

#: What this module tried, summed over its tests (printed by the last test).
CHECKED: Counter = Counter()


def _tally(name: str, **counts: int) -> None:
    CHECKED.update(counts)
    record_checked(f"protocol-{name}", **counts)


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _body(seq: int, code: int, payload: bytes = b"") -> bytes:
    """A frame body with its CRC (no length limit, unlike ``frame``)."""
    head = bytes([seq, code]) + bytes(payload)
    return head + (crc16(head) ^ 0xFFFF).to_bytes(2, "big")


def _escape(body: bytes) -> bytes:
    return slip_encode(body)[1:-1]


# ==== 1. CRC-16: the CCITT-FALSE register, sent as CRC-16/GENIBUS ====

def _crc_bitwise(data: bytes, crc: int = 0xFFFF) -> int:
    """An independent bit-at-a-time CRC-16/CCITT-FALSE (poly 0x1021, MSB first)."""
    for byte in data:
        for bit in range(7, -1, -1):
            feedback = ((crc >> 15) ^ (byte >> bit)) & 1
            crc = (crc << 1) & 0xFFFF
            if feedback:
                crc ^= 0x1021
    return crc


def test_crc16_check_value():
    # The catalogued check value: CRC RevEng catalogue, "CRC-16/IBM-3740" (alias
    # CRC-16/CCITT-FALSE, CRC-16/AUTOSAR): width=16 poly=0x1021 init=0xffff refin=false
    # refout=false xorout=0x0000 check=0x29b1 residue=0x0000.
    assert crc16(b"123456789") == 0x29B1
    assert _crc_bitwise(b"123456789") == 0x29B1
    # What a frame carries: the same register XOR 0xFFFF. Same catalogue, "CRC-16/GENIBUS":
    # poly=0x1021 init=0xffff refin=false refout=false xorout=0xffff check=0xd64e
    # residue=0x1d0f (the register after a whole correct body, before the final XOR).
    assert crc16(b"123456789") ^ 0xFFFF == 0xD64E
    assert CRC_RESIDUE == 0x1D0F
    (body, _), = SlipDecoder().feed(frame(0x31, 0x32, b"3456789"))
    assert body == b"123456789" + (0xD64E).to_bytes(2, "big")
    assert crc16(b"") == 0xFFFF
    assert crc16(b"A") == 0xB915


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=40))
def test_crc16_matches_bitwise_reference_and_chains(a, b):
    assert crc16(a) == _crc_bitwise(a)
    assert crc16(a + b) == crc16(b, crc16(a))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_FRAME))
def test_crc_of_body_and_its_crc_is_the_residue(body):
    crc = crc16(body) ^ 0xFFFF
    assert crc16(body + crc.to_bytes(2, "big")) == CRC_RESIDUE   # high byte first
    # frame() appends exactly that, high byte first.
    if 2 <= len(body) <= MAX_FRAME - 2:
        (decoded, error), = SlipDecoder().feed(frame(body[0], body[1], body[2:]))
        assert error is None and decoded == body + crc.to_bytes(2, "big")


# ==== 2. SLIP ====

SPECIAL = [END, ESC, ESC_END, ESC_ESC, 0x00, 0xFF]
bodies = st.one_of(st.binary(max_size=MAX_FRAME),
                   st.lists(st.sampled_from(SPECIAL), max_size=MAX_FRAME).map(bytes),
                   st.integers(0, MAX_FRAME).map(lambda n: bytes([END]) * n),
                   st.integers(0, MAX_FRAME).map(lambda n: bytes([ESC]) * n))
payloads = st.one_of(st.binary(max_size=80),
                     st.lists(st.sampled_from(SPECIAL), max_size=80).map(bytes))
requests = st.tuples(st.integers(0, 255), st.integers(0, 255), payloads)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(bodies)
def test_slip_round_trip(body):
    wire = slip_encode(body)
    inner = wire[1:-1]
    assert wire[0] == END and wire[-1] == END and END not in inner
    assert len(inner) == len(body) + body.count(END) + body.count(ESC)
    for k, byte in enumerate(inner):
        if byte == ESC:
            assert k + 1 < len(inner) and inner[k + 1] in (ESC_END, ESC_ESC)
    assert SlipDecoder().feed(wire) == ([(body, None)] if body else [])


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255),
       st.one_of(st.binary(max_size=MAX_PAYLOAD),
                 st.lists(st.sampled_from(SPECIAL), max_size=MAX_PAYLOAD).map(bytes)))
def test_frame_round_trip(seq, code, payload):
    (body, error), = SlipDecoder().feed(frame(seq, code, payload))
    assert error is None and len(body) == len(payload) + 4
    assert parse_body(body) == (seq, code, payload)


def test_frame_limits():
    assert MAX_PAYLOAD == MAX_FRAME - 4 and MAX_OUTPUTS == MAX_PAYLOAD // 4
    (body, error), = SlipDecoder().feed(frame(7, 2, bytes([END]) * MAX_PAYLOAD))
    assert error is None and len(body) == MAX_FRAME   # 1 + 1 + 508 + 2, escaping not counted
    for bad in ((0, 0, bytes(MAX_PAYLOAD + 1)), (256, 0, b""), (-1, 0, b""), (0, 256, b"")):
        with pytest.raises(ValueError):
            frame(*bad)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(requests, min_size=1, max_size=5), st.lists(st.integers(0, 5000), max_size=12))
def test_frames_split_across_feeds(reqs, cuts):
    wire = b"".join(frame(*r) for r in reqs)
    points = sorted({c % (len(wire) + 1) for c in cuts}) + [len(wire)]
    decoder, got, start = SlipDecoder(), [], 0
    for point in points:
        got += decoder.feed(wire[start:point])
        start = point
    assert all(error is None for _, error in got)
    assert [parse_body(body) for body, _ in got] == reqs
    # Byte by byte, and with one END between frames instead of two.
    decoder = SlipDecoder()
    assert [f for byte in wire for f in decoder.feed(bytes([byte]))] == got
    single = bytes([END]) + b"".join(_escape(_body(*r)) + bytes([END]) for r in reqs)
    assert SlipDecoder().feed(single) == got


def _unslip(raw: bytes) -> tuple[bytes, Status | None]:
    """The frame the decoder should cut from ``raw`` (no END in it, not oversized)."""
    body, error, escaped = bytearray(), None, False
    for byte in raw:
        if escaped:
            escaped = False
            if byte in (ESC_END, ESC_ESC):
                body.append(END if byte == ESC_END else ESC)
            else:
                error = error or Status.ESCAPE
        elif byte == ESC:
            escaped = True
        else:
            body.append(byte)
    assert not escaped
    return bytes(body), error


def _dangling_escape(raw: bytes) -> bool:
    escaped = False
    for byte in raw:
        escaped = (not escaped) and byte == ESC
    return escaped


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.one_of(st.binary(min_size=1, max_size=300),
                 st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=300).map(bytes)),
       requests)
def test_garbage_before_a_frame_is_cut_off(garbage, req):
    garbage = garbage.replace(bytes([END]), b"")
    # ESC right before END is the documented-but-unflagged case: see
    # test_esc_before_end_is_a_bad_escape.
    assume(garbage and not _dangling_escape(garbage))
    frames = SlipDecoder().feed(garbage + frame(*req))
    junk = _unslip(garbage)
    expected = [junk] if junk[0] or junk[1] is not None else []
    assert frames[:-1] == expected
    body, error = frames[-1]
    assert error is None and parse_body(body) == req


@settings(derandomize=True, max_examples=300, deadline=None)
@given(requests, st.integers(0, 10_000), st.integers(0, 255).filter(
    lambda b: b not in (ESC_END, ESC_ESC, END)), requests)
def test_bad_escape_is_flagged_and_the_next_frame_decodes(req, where, bad, after):
    inner = _escape(_body(*req))
    k = where % (len(inner) + 1)
    while k and _dangling_escape(inner[:k]):   # not in the middle of an escape pair
        k -= 1
    wire = bytes([END]) + inner[:k] + bytes([ESC, bad]) + inner[k:] + frame(*after)
    (body, error), (body2, error2) = SlipDecoder().feed(wire)
    assert error is Status.ESCAPE
    with pytest.raises(ProtocolError) as exc:
        parse_body(body, error)
    assert exc.value.status is Status.ESCAPE
    assert error2 is None and parse_body(body2) == after


def test_first_error_wins():
    # A bad escape, then too many bytes: ESCAPE; too many bytes, then a bad escape: OVERSIZE.
    wire = bytes([END, ESC, 0x01]) + bytes(MAX_FRAME + 10) + bytes([END])
    (body, error), = SlipDecoder().feed(wire)
    assert error is Status.ESCAPE and len(body) == MAX_FRAME
    wire = bytes([END]) + bytes(MAX_FRAME + 10) + bytes([ESC, 0x01, END])
    (body, error), = SlipDecoder().feed(wire)
    assert error is Status.OVERSIZE and body == bytes(MAX_FRAME)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(0, 2**32), requests)
def test_oversize_is_flagged_and_the_decoder_resynchronizes(extra, seed, after):
    rnd = random.Random(seed)
    body = bytearray(rnd.randbytes(MAX_FRAME + extra))
    for _ in range(len(body) // 3):
        body[rnd.randrange(len(body))] = rnd.choice(SPECIAL)
    body = bytes(body)
    frames = SlipDecoder().feed(slip_encode(body) + frame(*after))
    assert frames[0] == (body[:MAX_FRAME], Status.OVERSIZE)
    assert frames[1][1] is None and parse_body(frames[1][0]) == after
    assert len(frames) == 2
    # Exactly MAX_FRAME bytes is fine, however many of them need escaping.
    assert SlipDecoder().feed(slip_encode(body[:MAX_FRAME])) == [(body[:MAX_FRAME], None)]


def test_esc_before_end_is_a_bad_escape():
    body = _body(1, Command.STATUS)
    frames = SlipDecoder().feed(bytes([END]) + _escape(body) + bytes([ESC, END]))
    assert frames == [(body, Status.ESCAPE)]


# ==== 3. the receiver under corruption ====

def _random_request(rng: random.Random, length: int | None = None) -> tuple[int, int, bytes]:
    if length is None:
        r = rng.random()
        length = (rng.randint(0, 40) if r < 0.7 else rng.randint(41, 200) if r < 0.95
                  else rng.randint(201, MAX_PAYLOAD))
    payload = bytearray(rng.randbytes(length))
    for _ in range(length // 4):   # plenty of bytes that need escaping, and zeros
        payload[rng.randrange(length)] = rng.choice(SPECIAL)
    return rng.randrange(256), rng.randrange(256), bytes(payload)


def _refused_crc(body: bytes) -> bool:
    try:
        parse_body(body)
    except ProtocolError as exc:
        return exc.status is Status.CRC
    return False


def test_crc_detects_every_single_bit_error_and_burst_up_to_16_bits():
    """Errors that keep the frame's length: CRC-16 detects every one of them (as CRC)."""
    rng = random.Random(BASE_SEED + 301)
    checked, missed = 0, []

    def check(body, error):
        nonlocal checked
        checked += 1
        corrupted = (int.from_bytes(body, "big") ^ error).to_bytes(len(body), "big")
        if not _refused_crc(corrupted):
            missed.append((body.hex(), hex(error)))

    requests_ = ([_random_request(rng, rng.randint(0, 20)) for _ in range(120)]
                 + [_random_request(rng, n) for n in (100, 300, MAX_PAYLOAD)])
    for req in requests_:
        body = _body(*req)
        nbits = 8 * len(body)
        sample = 1.0 if len(body) <= 40 else 0.05
        # Bits in the order the CRC sees them: byte 0's MSB first. ``start`` is a burst's first
        # bit; a burst of ``length`` bits has its first and last bit flipped, any in between.
        for start in range(nbits):
            for length in range(1, 17):
                if start + length > nbits:
                    break
                if length > 1 and rng.random() > sample:
                    continue
                pattern = 1 if length == 1 else (
                    1 | rng.getrandbits(length - 2) << 1 | 1 << (length - 1) if length > 2 else 3)
                check(body, pattern << (nbits - start - length))
    # Every 16-bit burst (2**14 patterns) at a few places, and every 2-bit error of short
    # frames (g(x) has a primitive factor of degree 15: all 2-bit errors within 32767 bits).
    body = _body(*_random_request(rng, 8))
    nbits = 8 * len(body)
    for shift in (0, 13, nbits - 16):
        for middle in range(1 << 14):
            check(body, (1 | middle << 1 | 1 << 15) << shift)
    for _ in range(4):
        body = _body(*_random_request(rng, rng.randint(0, 12)))
        nbits = 8 * len(body)
        for i in range(nbits):
            for j in range(i + 1, nbits):
                check(body, 1 << i | 1 << j)
    # Odd numbers of flipped bits anywhere: (x + 1) divides g(x), so all are detected.
    for _ in range(3000):
        body = _body(*_random_request(rng))
        nbits = 8 * len(body)
        bits = rng.sample(range(nbits), rng.choice((3, 5, 7, 9)))
        check(body, sum(1 << b for b in bits))
    assert not missed, f"{len(missed)} of {checked} errors accepted, e.g. {missed[:3]}"
    _tally("crc-bursts", protocol_corrupted_frames_tried=checked)
    print(f"\nCRC: {checked:,} single-bit, burst (<= 16 bits), 2-bit and odd-weight errors, "
          f"all refused")


def _mutate(rng: random.Random, body: bytes) -> bytes:
    b = bytearray(body)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        op = rng.randrange(7)
        if op == 0 and b:            # flip one bit
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:          # replace a byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2 and b:          # drop bytes
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 3)]
        elif op == 3:                # insert a byte (the end included)
            b.insert(rng.randint(0, len(b)), rng.choice((rng.randrange(256), 0, END, ESC)))
        elif op == 4 and b:          # repeat bytes
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 3)]
        elif op == 5 and len(b) > 1:  # swap two bytes
            i, j = rng.randrange(len(b)), rng.randrange(len(b))
            b[i], b[j] = b[j], b[i]
        elif op == 6 and b:          # cut the tail off
            del b[rng.randrange(len(b)):]
    return bytes(b)


def _classify(original: bytes, received: bytes, outcome: Counter) -> None:
    """Count what the receiver made of ``received`` (a body that was ``original``)."""
    try:
        got = parse_body(received)
    except ProtocolError as exc:
        outcome[f"refused {exc.status.name}"] += 1
        return
    if got == parse_body(original):
        outcome["accepted unchanged"] += 1
    elif received[:len(original)] == original and not any(received[len(original):]):
        # What a CRC without the final XOR (CRC-16/CCITT-FALSE, residue 0) would let through:
        # zero bytes after the CRC keep its register at 0. Counted apart: it must stay 0.
        outcome["accepted: zero bytes appended"] += 1
    else:
        outcome["accepted: different frame (CRC collision)"] += 1


def _collision_bound(trials: int) -> float:
    """Generous: 4x the 2**-16 rate of a random 16-bit check, plus slack for small counts."""
    return 4 * trials / 2**16 + 8


def test_random_corruption_of_bodies_is_refused():
    """Bit flips, dropped, inserted, repeated, swapped bytes: parse_body refuses the frame or
    returns exactly the original (seq, code, payload); a different frame gets through only as
    often as a 16-bit check allows."""
    rng = random.Random(BASE_SEED + 302)
    trials, outcome = 100_000, Counter()
    for _ in range(trials):
        body = _body(*_random_request(rng))
        corrupted = _mutate(rng, body)
        if corrupted == body:
            outcome["unchanged"] += 1
            continue
        _classify(body, corrupted, outcome)
    collisions = outcome["accepted: different frame (CRC collision)"]
    print(f"\nbody corruption, {trials:,} frames: {dict(sorted(outcome.items()))}")
    _tally("body-fuzz", protocol_corrupted_frames_tried=trials,
           protocol_crc_collisions=collisions,
           protocol_zero_tail_acceptances=outcome["accepted: zero bytes appended"])
    assert collisions <= _collision_bound(trials), dict(outcome)
    assert outcome["accepted: zero bytes appended"] == 0, dict(outcome)
    refused = sum(v for k, v in outcome.items() if k.startswith("refused"))
    assert refused >= 0.999 * (trials - outcome["unchanged"]), dict(outcome)


def test_random_corruption_on_the_wire_is_refused_and_the_decoder_resynchronizes():
    """The same on the SLIP byte stream: corrupt an encoded frame (ENDs and escapes included),
    follow it with a good frame; every frame cut from the damage is refused or the original,
    and the good frame always decodes."""
    rng = random.Random(BASE_SEED + 303)
    trials, pieces, outcome = 40_000, 0, Counter()
    probe = (0x5A, Command.STATUS, b"")
    for _ in range(trials):
        req = _random_request(rng)
        body = _body(*req)
        wire = bytearray(slip_encode(body))
        for _ in range(rng.choice((1, 1, 2, 3))):
            op = rng.randrange(4)
            if op == 0:
                wire[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
            elif op == 1:
                wire.insert(rng.randint(0, len(wire)), rng.choice((rng.randrange(256), END,
                                                                   ESC, ESC_END, 0)))
            elif op == 2:
                del wire[rng.randrange(len(wire))]
            else:
                wire[rng.randrange(len(wire))] = rng.choice((END, ESC, ESC_END, ESC_ESC))
        frames = SlipDecoder().feed(bytes(wire) + frame(*probe))
        assert frames and frames[-1][1] is None and parse_body(frames[-1][0]) == probe
        for received, error in frames[:-1]:
            pieces += 1
            if error is not None:
                outcome[f"refused {error.name}"] += 1
            else:
                _classify(body, received, outcome)
    collisions = outcome["accepted: different frame (CRC collision)"]
    print(f"\nwire corruption, {trials:,} frames ({pieces:,} pieces): "
          f"{dict(sorted(outcome.items()))}")
    _tally("wire-fuzz", protocol_corrupted_frames_tried=trials,
           protocol_crc_collisions=collisions,
           protocol_zero_tail_acceptances=outcome["accepted: zero bytes appended"])
    assert collisions <= _collision_bound(pieces), dict(outcome)
    assert outcome["accepted: zero bytes appended"] == 0, dict(outcome)


def test_zero_bytes_after_the_crc_are_refused():
    client = Client()
    client.write(0, Region.MEMBRANE, 0, [0, 0, 0, 0])
    before = client.read(0, Region.MEMBRANE, 0, 4)
    body = _body(0x42, Command.WRITE, struct.pack(HEADER, 0, Region.MEMBRANE, 0)
                 + (5).to_bytes(WB, "little"))
    # The four zero bytes could be a line glitch just before the closing END.
    [(seq, status, echo)] = client.exchange(slip_encode(body + bytes(WB)))
    client.frames += 1
    if status != Status.OK:
        client.naks += 1
        client.bad_frames += 1
    assert client.read(0, Region.MEMBRANE, 0, 4) == before   # actually: [5, crc, 0, 0]
    assert (seq, status, echo) == (0x42, Status.CRC, bytes([Command.WRITE]))


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


# ==== 4. LinkModel semantics ====

def test_info_describes_the_chip():
    client = Client()
    answer = client.ok(Command.INFO)
    assert ChipInfo.decode(answer) == INFO and answer == INFO.encode()
    # By hand: SYNAPSE is axons x ceil(neurons / lanes) words, REGISTER 8 words, a route-index
    # entry per neuron, 64 route destinations (TileConfig's default).
    assert [t.regions for t in INFO.tiles] == [(8, 4, 4, 4, 8, 4, 64), (8, 3, 3, 3, 8, 3, 64)]
    assert WB == 4 and [t.data_bits for t in INFO.tiles] == [32, 32]
    assert [s.accumulator_bits for s in SHAPES] == [11, 10]   # 8 or 4 events of -128..127
    assert (INFO.cols, INFO.rows, INFO.host, INFO.output_depth) == (2, 1, (0, 0), 16)
    assert INFO.max_read_words == MAX_PAYLOAD // WB


def test_state_after_power_up():
    client = Client()
    for k in TILES:
        for region in Region:
            words = client.region(k, region)
            if region == Region.REGISTER:
                assert words == [SHAPES[k].v_max, 0, 0, 0, 0, 0, 0, 0]
                assert words == [REGISTERS[r].reset_of(SHAPES[k]) for r in Register]
            else:
                assert words == [0] * len(words)
    status = client.status()
    assert status == LinkStatus(0, 0, 0, 0, client.frames, 0, 0)
    assert client.outputs() == []


def _stored(k: int, region: int, offset: int, word: int, old: int) -> int:
    """What a word reads back as after it is written over ``old`` (a read-back value)."""
    tile, shape = INFO.tiles[k], SHAPES[k]
    mask = (1 << tile.data_bits) - 1
    word &= mask
    if region == Region.SYNAPSE:
        return word & ((1 << (tile.lanes * tile.w_bits)) - 1)
    if region in (Region.MEMBRANE, Region.BIAS):
        return _signed(word, tile.v_bits) & mask
    if region == Region.ACCUMULATOR:    # a write clears I
        return 0
    if region == Region.REGISTER:
        if offset >= EVENTS:    # a write clears a counter
            return 0
        valid = {THRESHOLD: 1 <= word <= shape.v_max, LEAK: word < tile.v_bits,
                 RESET_MODE: word in (0, 1)}[offset]
        return word if valid else old
    if region == Region.ROUTE_INDEX:
        return word & ((1 << 22) - 1)
    return word & 0xFFFF


EDGE_WORDS = [0, 1, 2, 3, 15, 16, 17, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x400, 0x7FF, 0x800,
              0x7FFE, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x10000, 0x1FFFFF, 0x200000, 0x3FFFFF,
              0x400000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def _word(rng: random.Random) -> int:
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


def test_writes_read_back_as_stored_in_every_region():
    """Random WRITEs and FILLs to every region of every tile, checked against the rules:
    synapse words masked to lanes * w_bits, membranes and biases truncated to v_bits and
    accumulators to accumulator_bits (read back sign-extended to data_bits), registers
    refusing invalid parameters, route entries 22 bits, route destinations 16 bits."""
    rng = random.Random(BASE_SEED + 401)
    client = Client()
    mirror = {(k, r): client.region(k, r) for k in TILES for r in Region}
    words_checked = 0

    def compare():
        nonlocal words_checked
        for (k, r), expected in mirror.items():
            assert client.region(k, r) == expected, (k, Region(r).name)
            words_checked += len(expected)

    for step in range(600):
        k, region = rng.choice(TILES), rng.choice(list(Region))
        size = INFO.tiles[k].regions[region]
        offset = rng.randrange(size)
        count = rng.randint(1, min(size - offset, 12))
        words = [_word(rng) for _ in range(count)]
        if region == Region.REGISTER and rng.random() < 0.5:   # mostly parameters
            offset, count = rng.randrange(3), 1
            words = [rng.choice([0, 1, 2, 3, 15, 16, 17, SHAPES[k].v_max, SHAPES[k].v_max + 1,
                                 rng.randint(1, SHAPES[k].v_max), WORD_MASK, 1 << 31])]
        memory = mirror[k, region]
        if rng.random() < 0.25:
            client.fill(k, region, offset, count, words[0])
            words = [words[0]] * count
        else:
            client.write(k, region, offset, words)
        for i, word in enumerate(words):
            memory[offset + i] = _stored(k, region, offset + i, word, memory[offset + i])
        if step % 100 == 99:
            compare()
    compare()
    _tally("write-read", protocol_words_read_back=words_checked)


def test_register_and_sign_rules_by_example():
    client = Client()
    vmax = SHAPES[0].v_max
    client.write(0, Region.MEMBRANE, 0, [0x0001_8000, 0x7FFF, 0xFFFF_0001, 0x1_0000])
    assert client.region(0, Region.MEMBRANE) == [0xFFFF_8000, 0x7FFF, 1, 0]
    client.write(1, Region.BIAS, 0, [0x8000, 0xFFFF, 0x12345])
    assert client.region(1, Region.BIAS) == [0xFFFF_8000, 0xFFFF_FFFF, 0x2345]
    # A write to I clears it, whatever the value (reads sign-extend: see the run below).
    client.write(0, Region.ACCUMULATOR, 0, [0x3FF, 0x400, 0x800, 0xFFFF_FFFF])
    assert client.region(0, Region.ACCUMULATOR) == [0, 0, 0, 0]
    client.write(1, Region.SYNAPSE, 0, [0xDEAD_BEEF])                           # 2 lanes x 8
    client.write(0, Region.SYNAPSE, 0, [0xDEAD_BEEF])                           # 4 lanes x 8
    assert client.read(1, Region.SYNAPSE, 0, 1) == [0xBEEF]
    assert client.read(0, Region.SYNAPSE, 0, 1) == [0xDEAD_BEEF]
    client.write(0, Region.ROUTE_INDEX, 0, [0xFFFF_FFFF, TO_HOST | 5 << 10 | 3])
    client.write(0, Region.ROUTE_DEST, 63, [0xFFFF_FFFF])
    assert client.read(0, Region.ROUTE_INDEX, 0, 2) == [0x3F_FFFF, TO_HOST | 5 << 10 | 3]
    assert client.read(0, Region.ROUTE_DEST, 63, 1) == [0xFFFF]

    def registers():
        return client.read(0, Region.REGISTER, 0, 3)

    assert registers() == [vmax, 0, 0]
    for bad in (0, vmax + 1, 0x8000_0000, 0xFFFF_FFFF):
        client.write(0, Region.REGISTER, THRESHOLD, [bad])
        assert registers() == [vmax, 0, 0]
    for good in (1, 1234, vmax):
        client.write(0, Region.REGISTER, THRESHOLD, [good])
        assert registers() == [good, 0, 0]
    for leak in (16, 17, 0xFFFF_FFFF):
        client.write(0, Region.REGISTER, LEAK, [leak])
        assert registers() == [vmax, 0, 0]
    client.write(0, Region.REGISTER, LEAK, [15])
    for reset in (2, 3, 0xFFFF_FFFF):
        client.write(0, Region.REGISTER, RESET_MODE, [reset])
        assert registers() == [vmax, 15, 0]
    client.write(0, Region.REGISTER, RESET_MODE, [1])
    assert registers() == [vmax, 15, 1]
    # One WRITE of three words: each judged on its own.
    client.write(0, Region.REGISTER, THRESHOLD, [0, 3, 1])
    assert registers() == [vmax, 3, 1]
    # FILL of every register with 5: threshold 5, leak 5, reset refused, counters cleared.
    client.fill(0, Region.REGISTER, 0, 8, 5)
    assert client.region(0, Region.REGISTER) == [5, 5, 1, 0, 0, 0, 0, 0]
    assert client.region(1, Region.REGISTER) == [SHAPES[1].v_max] + [0] * 7


def _synapse_words(k: int, weights: dict[tuple[int, int], int]) -> list[int]:
    """The SYNAPSE region of tile ``k`` holding ``weights[(axon, neuron)]`` (others 0)."""
    tile = INFO.tiles[k]
    rows = -(-tile.neurons // tile.lanes)
    words = [0] * tile.regions[Region.SYNAPSE]
    for (axon, neuron), w in weights.items():
        words[axon * rows + neuron // tile.lanes] |= \
            (w & ((1 << tile.w_bits) - 1)) << (neuron % tile.lanes * tile.w_bits)
    return words


def test_run_spikes_outputs_and_status():
    client = Client()
    # Tile (1, 0): axon 2 -> neuron 1 with weight 100, threshold 50, neuron 1 to the host.
    client.write(1, Region.SYNAPSE, 0, _synapse_words(1, {(2, 1): 100, (3, 0): -7}))
    client.write(1, Region.REGISTER, THRESHOLD, [50])
    client.write(1, Region.ROUTE_INDEX, 1, [TO_HOST])
    # Inject only: the event waits in the accumulator.
    assert client.run(0, [(1, 0, 2)]) == (0, 0)
    assert client.region(1, Region.ACCUMULATOR) == [0, 100, 0]
    assert client.read(1, Region.REGISTER, EVENTS, 2) == [1, 3]   # events, sops (= N)
    # One tick: V = 100 >= 50, a spike, V = 100 - 50 (subtract reset).
    assert client.run(1) == (1, 1)
    assert client.region(1, Region.MEMBRANE) == [0, 50, 0]
    assert client.region(1, Region.ACCUMULATOR) == [0, 0, 0]
    status = client.status()
    assert (status.ticks, status.output_pending, status.output_drops, status.mesh_drops) == \
           (1, 1, 0, 0)
    assert client.outputs() == [(1, 1 | 0 << 3, 0)]   # neuron 1, x = 1 | y << 3, tick 0
    assert client.status().output_pending == 0
    # V = 50 spikes again in tick 1 (threshold inclusive), then stays at 0.
    assert client.run(3) == (4, 1)
    assert client.outputs(1) == [(1, 1, 1)]
    assert client.outputs() == []
    assert client.region(1, Region.MEMBRANE) == [0, 0, 0]
    assert client.read(1, Region.REGISTER, EVENTS, 3) == [1, 3, 4]   # events, sops, ticks
    assert client.read(0, Region.REGISTER, TICKS, 1) == [4]
    # A negative weight: axon 3 -> neuron 0 with -7, read back sign-extended.
    client.run(0, [(1, 0, 3), (1, 0, 3)])
    assert client.region(1, Region.ACCUMULATOR) == [(-14) & 0xFFFF_FFFF, 0, 0]
    client.run(1)
    assert client.region(1, Region.MEMBRANE) == [(-14) & 0xFFFF_FFFF, 0, 0]
    # Clearing one neuron's I leaves the others' (the row's other lane) alone.
    client.run(0, [(1, 0, 3), (1, 0, 2)])
    assert client.region(1, Region.ACCUMULATOR) == [(-7) & 0xFFFF_FFFF, 100, 0]
    client.write(1, Region.ACCUMULATOR, 0, [12345])
    assert client.region(1, Region.ACCUMULATOR) == [0, 100, 0]
    assert unpack_event_word(pack_event_word(1, 0, 3)) == (1, 0, 3)


def test_run_routes_spikes_between_tiles():
    client = Client()
    # Tile (0, 0) neuron 0: axon 1 with weight 60, threshold 50; one route, entry 5, to tile
    # (1, 0) axon 2. Neuron 2: bias 60, one route, entry 9, to a tile outside the mesh.
    client.write(0, Region.SYNAPSE, 0, _synapse_words(0, {(1, 0): 60}))
    client.write(0, Region.REGISTER, THRESHOLD, [50])
    client.write(0, Region.BIAS, 2, [60])
    client.write(0, Region.ROUTE_INDEX, 0, [5 | 1 << 10, 0, 9 | 1 << 10])
    client.write(0, Region.ROUTE_DEST, 5, [1 | 0 << 3 | 2 << 6])
    client.write(0, Region.ROUTE_DEST, 9, [5 | 0 << 3 | 0 << 6])
    # Tile (1, 0) neuron 1: axon 2 with weight 100, threshold 50, to the host.
    client.write(1, Region.SYNAPSE, 0, _synapse_words(1, {(2, 1): 100}))
    client.write(1, Region.REGISTER, THRESHOLD, [50])
    client.write(1, Region.ROUTE_INDEX, 1, [TO_HOST])
    # Tick 0: tile 0 neurons 0 (60) and 2 (bias 60) spike; tick 1: tile 1 neuron 1 spikes.
    assert client.run(2, [(0, 0, 1)]) == (2, 1)
    assert client.outputs() == [(1, 1, 1)]
    status = client.status()
    # Neuron 2 spikes in ticks 0 (60) and 1 (10 + 60): two events to a tile that is not there.
    assert (status.ticks, status.mesh_drops) == (2, 2)
    assert client.region(0, Region.MEMBRANE) == [10, 0, 20, 0]


def test_output_queue_overflow_and_outputs_oldest_first():
    client = Client()
    # Every neuron of tile (0, 0): bias 1, threshold 1, to the host: 4 spikes every tick.
    client.fill(0, Region.BIAS, 0, 4, 1)
    client.write(0, Region.REGISTER, THRESHOLD, [1])
    client.fill(0, Region.ROUTE_INDEX, 0, 4, TO_HOST)
    assert client.run(5) == (5, INFO.output_depth)
    status = client.status()
    assert (status.output_pending, status.output_drops) == (16, 4)
    first = client.outputs(3)
    rest = client.outputs()
    # Within a tick the order may differ from the hardware's; across ticks oldest first.
    assert [tick for *_, tick in first + rest] == sorted(tick for *_, tick in first + rest)
    assert sorted(first + rest) == sorted((n, 0, t) for t in range(4) for n in range(4))
    assert client.outputs(0) == [] and client.outputs() == []
    assert client.status().output_pending == 0


def test_reset_clears_membranes_accumulators_and_outputs_only():
    rng = random.Random(BASE_SEED + 402)
    client = Client()
    _random_state(client, rng)
    client.run(0, [(0, 0, a) for a in range(4)] + [(1, 0, 0)])
    client.fill(0, Region.MEMBRANE, 0, 4, 77)
    before = client.snapshot()
    assert any(before[0][k * len(Region) + Region.ACCUMULATOR] for k in TILES)
    assert before[1][3] > 0, "the random state should leave outputs queued"
    assert client.ok(Command.RESET) == b""
    after = client.snapshot()
    for k in TILES:
        for r in Region:
            i = k * len(Region) + r
            if r in (Region.MEMBRANE, Region.ACCUMULATOR):
                assert after[0][i] == (0,) * len(after[0][i])
            else:
                assert after[0][i] == before[0][i], (k, r.name)
    assert after[1] == before[1][:3] + (0,) and after[2] == ()
    assert client.outputs() == []


def test_tile_numbering_and_positions_on_a_2x2_chip():
    """Tile ``y * cols + x``, and events and outputs that carry a ``y`` (always 0 on the
    2 x 1 chip)."""
    shapes = {(0, 0): CoreShape(4, 2), (1, 0): CoreShape(5, 2), (0, 1): CoreShape(6, 3),
              (1, 1): CoreShape(7, 2)}
    info = chip_info(cols=2, rows=2, host=(1, 1), output_depth=8,
                     tiles={p: TileConfig(s, lanes=2) for p, s in shapes.items()})
    client = Client(info)
    assert ChipInfo.decode(client.ok(Command.INFO)) == info
    assert [t.axons for t in info.tiles] == [4, 5, 6, 7] and info.word_bytes == WB
    # Tile (0, 1) is number 2: axon 5 -> neuron 2 (row 1, lane 0: word 5 * 2 + 1), weight 90.
    client.write(2, Region.SYNAPSE, 11, [90])
    client.write(2, Region.REGISTER, THRESHOLD, [40])
    client.write(2, Region.ROUTE_INDEX, 2, [TO_HOST])
    # Tile (1, 1) is number 3: neuron 1 spikes on its bias alone.
    client.write(3, Region.BIAS, 1, [100])
    client.write(3, Region.REGISTER, THRESHOLD, [100])
    client.write(3, Region.ROUTE_INDEX, 1, [TO_HOST])
    for event in ((0, 2, 0), (2, 0, 0), (1, 1, 7), (0, 1, 6)):
        client.nak(Command.RUN, struct.pack("<HH", 1, pack_event_word(*event)), Status.ADDRESS)
    client.nak(Command.READ, struct.pack(HEADER + "H", 4, Region.BIAS, 0, 1), Status.ADDRESS)
    assert client.run(1, [(0, 1, 5)]) == (1, 2)
    assert sorted(client.outputs()) == [(1, 1 | 1 << 3, 0), (2, 0 | 1 << 3, 0)]
    assert client.region(2, Region.MEMBRANE) == [0, 0, 90 - 40]
    assert client.region(3, Region.MEMBRANE) == [0, 0]
    assert all(client.region(k, Region.MEMBRANE) == [0, 0] for k in (0, 1))
    assert client.status().ticks == 1


def test_info_and_status_decoders_refuse_malformed_answers():
    data = INFO.encode()
    for bad in (b"", data[:10], b"XPKF" + data[4:], data[:4] + bytes([2]) + data[5:],
                data[:-1], data + b"\0"):
        with pytest.raises(ProtocolError):
            ChipInfo.decode(bad)
    status = LinkStatus(1, 2, 3, 4, 5, 6, 7)
    assert LinkStatus.decode(status.encode()) == status
    for bad in (b"", status.encode()[:-1], status.encode() + b"\0"):
        with pytest.raises(ProtocolError):
            LinkStatus.decode(bad)
    with pytest.raises(ProtocolError):
        unpack_outputs(bytes(5))


# ==== 5. every NAK leaves the state as it was ====

def _safe_route_dest(rng: random.Random) -> int:
    """A route destination outside the 2 x 1 mesh (x >= 2): spikes routed there are dropped
    and counted, and never exceed a core's events_per_tick (see
    test_routed_events_beyond_the_budget_are_dropped)."""
    return (rng.getrandbits(8 * WB) & ~7) | rng.randint(2, 7)


def _random_state(client: Client, rng: random.Random) -> None:
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
                words = [_safe_route_dest(rng) for _ in range(size)]
            elif region == Region.BIAS:
                words = [rng.randint(-100, 200) & WORD_MASK for _ in range(size)]
            else:
                words = [_word(rng) for _ in range(size)]
            client.write(k, region, 0, words)
        assert client.read(k, Region.REGISTER, 0, 1)[0] <= shape.v_max
    # Neuron 0 of tile (0, 0) starts at v_max and reports to the host: whatever the weights,
    # biases and accumulators, it spikes in the first tick, so outputs are queued.
    client.write(0, Region.MEMBRANE, 0, [SHAPES[0].v_max])
    client.write(0, Region.ROUTE_INDEX, 0, [client.read(0, Region.ROUTE_INDEX, 0, 1)[0] | TO_HOST])
    for _ in range(3):
        client.run(rng.randint(1, 4), _random_events(rng))
    # Leave something in the accumulators of the current tick.
    for k in TILES:
        client.write(k, Region.ACCUMULATOR, 0,
                     [rng.randint(1, 200) for _ in range(INFO.tiles[k].neurons)])
    client.run(0, _random_events(rng))


def _random_events(rng: random.Random, n: int | None = None) -> list[tuple[int, int, int]]:
    n = rng.randint(0, 6) if n is None else n
    events = []
    for _ in range(n):
        k = rng.choice(TILES)
        events.append((k % INFO.cols, k // INFO.cols, rng.randrange(INFO.tiles[k].axons)))
    return events


def _valid_requests(rng: random.Random) -> list[tuple[int, bytes]]:
    """One request of every command, as (command, payload)."""
    k = rng.choice(TILES)
    return [
        (Command.INFO, b""),
        (Command.STATUS, b""),
        (Command.RESET, b""),
        (Command.WRITE, struct.pack(HEADER, k, Region.MEMBRANE, 1)
         + b"".join(_word(rng).to_bytes(WB, "little") for _ in range(2))),
        (Command.WRITE, struct.pack(HEADER, 0, Region.SYNAPSE, 0)
         + bytes([END, ESC] * (2 * WB))),
        (Command.READ, struct.pack(HEADER + "H", k, Region.SYNAPSE, 0, 3)),
        (Command.FILL, struct.pack(HEADER + "I", k, Region.BIAS, 0, 3)
         + (9).to_bytes(WB, "little")),
        (Command.RUN, struct.pack("<HHH", 3, pack_event_word(0, 0, 1), pack_event_word(1, 0, 3))),
        (Command.OUTPUTS, struct.pack("<H", 100)),
    ]


def _nak_cases(rng: random.Random):
    """(name, wire, status, seq, echoed command, counts as a bad frame) for every way a request
    can be refused. ``seq`` None: the next one the client picks."""
    cases = []
    for command, payload in _valid_requests(rng):
        body = _body(0x33, command, payload)
        # CRC: one corrupted byte anywhere (the seq and command bytes included).
        for index in sorted({0, 1, 2, len(body) // 2, len(body) - 2, len(body) - 1}):
            for flip in (0x01, 0x80, rng.randrange(1, 256)):
                bad = bytearray(body)
                bad[index] ^= flip
                cases.append((f"CRC {command.name} byte {index}", slip_encode(bytes(bad)),
                              Status.CRC, bad[0], bad[1], True))
        # ESCAPE: an invalid escape anywhere; the byte after ESC is dropped, the rest kept.
        inner = _escape(body)
        for k in sorted({0, 1, 2, len(inner) // 2, len(inner)}):
            while k and _dangling_escape(inner[:k]):
                k -= 1
            for bad in (0x00, ESC, rng.choice([b for b in range(256)
                                               if b not in (END, ESC_END, ESC_ESC)])):
                cases.append((f"ESCAPE {command.name} at {k}",
                              bytes([END]) + inner[:k] + bytes([ESC, bad]) + inner[k:]
                              + bytes([END]), Status.ESCAPE, 0x33, command, True))
        # OVERSIZE: the same request with its payload padded past MAX_FRAME.
        for total in (MAX_FRAME + 1, MAX_FRAME + 2, 700):
            big = _body(0x34, command, payload + bytes(total - 4 - len(payload)))
            assert len(big) == total
            cases.append((f"OVERSIZE {command.name} {total}", slip_encode(big),
                          Status.OVERSIZE, 0x34, command, True))
    # SHORT: fewer than 4 bytes; seq and command unknown, answered as 0.
    for short in (b"\x07", b"\x07\x08", bytes([9, Command.RESET, 0]), bytes([END, ESC, 1])):
        cases.append((f"SHORT {short.hex()}", slip_encode(short), Status.SHORT, 0, 0, True))
    cases.append(("ESCAPE, short", bytes([END, ESC, 0x01, END]), Status.ESCAPE, 0, 0, True))
    cases.append(("ESCAPE, short 2", bytes([END, 7, ESC, 0x01, 8, END]), Status.ESCAPE, 0, 0,
                  True))

    def request(name, command, payload, status):
        cases.append((name, None, status, None, (command, payload), False))

    # COMMAND: every unknown command byte.
    for code in range(256):
        if code not in Command.__members__.values():
            request(f"COMMAND 0x{code:02x}", code, bytes(rng.randrange(3)), Status.COMMAND)
    # LENGTH: every wrong payload length of every command (built from valid requests, so
    # reading the first bytes as usual would find a sensible request).
    full = {Command.INFO: b"\x01\x02\x03", Command.STATUS: b"\x00\x00", Command.RESET: b"\x00",
            Command.WRITE: struct.pack(HEADER, 0, Region.MEMBRANE, 0)
            + bytes(range(1, 3 * WB + 2)),
            Command.READ: struct.pack(HEADER + "H", 0, Region.MEMBRANE, 0, 1) + b"\x01\x02",
            Command.FILL: struct.pack(HEADER + "I", 0, Region.MEMBRANE, 0, 2)
            + bytes(range(1, WB + 3)),
            Command.RUN: struct.pack("<HHH", 2, pack_event_word(0, 0, 1), 0) + b"\x00",
            Command.OUTPUTS: struct.pack("<H", 5) + b"\x00\x00"}
    valid_length = {Command.INFO: lambda n: n == 0, Command.STATUS: lambda n: n == 0,
                    Command.RESET: lambda n: n == 0,
                    Command.WRITE: lambda n: n >= ADDRESS_BYTES + WB and
                    (n - ADDRESS_BYTES) % WB == 0,
                    Command.READ: lambda n: n == ADDRESS_BYTES + 2,
                    Command.FILL: lambda n: n == ADDRESS_BYTES + 4 + WB,
                    Command.RUN: lambda n: n >= 2 and n % 2 == 0,
                    Command.OUTPUTS: lambda n: n == 2}
    for command, payload in full.items():
        for n in range(len(payload) + 1):
            if not valid_length[command](n):
                request(f"LENGTH {command.name} {n}", command, payload[:n], Status.LENGTH)
    # ARGUMENT: counts out of range (checked before the address).
    most = INFO.max_read_words
    for count in (0, most + 1, 0xFFFF):
        request(f"ARGUMENT READ {count}", Command.READ,
                struct.pack(HEADER + "H", 0, Region.SYNAPSE, 0, count), Status.ARGUMENT)
    request("ARGUMENT READ 0 at a bad address", Command.READ,
            struct.pack(HEADER + "H", 9, 9, 99, 0), Status.ARGUMENT)
    request("ARGUMENT FILL 0", Command.FILL,
            struct.pack(HEADER + "I", 0, Region.BIAS, 0, 0) + bytes(WB), Status.ARGUMENT)
    request("ARGUMENT FILL 0 at a bad address", Command.FILL,
            struct.pack(HEADER + "I", 0, 7, 0, 0) + bytes(WB), Status.ARGUMENT)
    for n in (MAX_OUTPUTS + 1, 0xFFFF):
        request(f"ARGUMENT OUTPUTS {n}", Command.OUTPUTS, struct.pack("<H", n), Status.ARGUMENT)

    # ADDRESS: tiles, regions, offsets and ends outside the chip, for WRITE, READ and FILL.
    def address(tile, region, offset, count):
        name = f"ADDRESS tile {tile} region {region} offset {offset} count {count}"
        words = b"".join(rng.getrandbits(8 * WB).to_bytes(WB, "little")
                         for _ in range(min(count, 100)))
        if count <= 100:
            request("WRITE " + name, Command.WRITE, struct.pack(HEADER, tile, region, offset)
                    + words, Status.ADDRESS)
        if 1 <= count <= most:
            request("READ " + name, Command.READ,
                    struct.pack(HEADER + "H", tile, region, offset, count), Status.ADDRESS)
        request("FILL " + name, Command.FILL,
                struct.pack(HEADER + "I", tile, region, offset, count) + words[:WB],
                Status.ADDRESS)

    for tile in (len(INFO.tiles), 63, 255):
        address(tile, Region.SYNAPSE, 0, 1)
    for region in (len(Region), len(Region) + 1, 255):
        address(0, region, 0, 1)
    for k in TILES:
        for region in Region:
            size = INFO.tiles[k].regions[region]
            for offset, count in ((size, 1), (size + 1, 1), (0xFFFF_FFFF, 1), (size - 1, 2),
                                  (0, size + 1), (1, size), (2, 0xFFFF_FFFF),
                                  (0xFFFF_FFFF, 0xFFFF_FFFF)):
                address(k, region, offset, count)
    # RUN: one bad event among good ones, anywhere: ADDRESS, and none injected.
    bad_events = [pack_event_word(2, 0, 0), pack_event_word(0, 1, 0), pack_event_word(7, 7, 0),
                  pack_event_word(0, 0, 8), pack_event_word(1, 0, 4), pack_event_word(1, 0, 1023)]
    for bad in bad_events:
        for ticks in (0, 3):
            good = [pack_event_word(*e) for e in _random_events(rng, 4)]
            good.insert(rng.randint(0, len(good)), bad)
            request(f"ADDRESS RUN {unpack_event_word(bad)} ticks {ticks}", Command.RUN,
                    struct.pack(f"<H{len(good)}H", ticks, *good), Status.ADDRESS)
    return cases


def _send_case(client: Client, case) -> None:
    _name, wire, status, seq, echo, bad = case
    if wire is None:
        command, payload = echo
        client.nak(command, payload, status)
    else:
        client.bad_frame(wire, status, seq, echo, bad=bad)


def test_every_nak_leaves_the_state_unchanged():
    rng = random.Random(BASE_SEED + 501)
    client = Client()
    _random_state(client, rng)
    before = client.snapshot()
    assert before[1][3] > 0 and any(before[0][Region.ACCUMULATOR]), "a poor random state"
    start = client.status()
    cases = _nak_cases(rng)
    sent = Counter()
    for case in cases:
        _send_case(client, case)
        sent[case[2].name] += 1
        sent["bad frames"] += case[5]
        assert client.snapshot() == before, case[0]
    # The counters: every frame counted, bad frames separately, every NAK.
    end = client.status()   # (its frames, bad_frames, naks checked against the client's tally)
    assert end.bad_frames - start.bad_frames == sent["bad frames"]
    assert end.naks - start.naks == len(cases)
    # An empty frame gets no answer and is not counted.
    assert client.exchange(bytes([END, END, END])) == []
    assert client.status().frames == end.frames + 1
    # And the chip still works: a good request after all that.
    assert client.snapshot() == before
    print(f"\nNAK cases: {len(cases)} ({dict(sorted(sent.items()))})")
    _tally("naks", protocol_nak_cases=len(cases))


def test_garbage_then_a_request_gets_a_nak_then_the_answer():
    client = Client()
    [(s1, nak, echo), (s2, ok, answer)] = client.exchange(
        b"\x01\x02\x03\x04\x05" + frame(0x77, Command.INFO))
    assert (s1, nak, echo) == (1, Status.CRC, b"\x02") and (s2, ok) == (0x77, Status.OK)
    assert ChipInfo.decode(answer) == INFO
    client.frames, client.bad_frames, client.naks = 2, 1, 1
    client.status()


def test_routed_events_beyond_the_budget_are_dropped():
    """The model drops and counts them as the hardware does (which ones it drops may differ
    from the hardware's: that depends on their order of arrival)."""
    client = Client()
    # Tile (0, 0) neuron 0 spikes every tick (bias = threshold = 10) and has 5 routes to tile
    # (1, 0), whose events_per_tick is 4.
    client.write(0, Region.BIAS, 0, [10])
    client.write(0, Region.REGISTER, THRESHOLD, [10])
    client.write(0, Region.ROUTE_INDEX, 0, [0 | 5 << 10])
    client.write(0, Region.ROUTE_DEST, 0, [1 | a << 6 for a in (0, 1, 2, 3, 0)])
    assert client.run(1) == (1, 0)
    events, _, _, _, drop_budget = client.read(1, Region.REGISTER, EVENTS, 5)
    assert (events, drop_budget) == (4, 1)


# ==== 6. random sessions: corrupted requests never change anything ====

def _valid_op(client: Client, rng: random.Random, kind: str) -> None:
    k = rng.choice(TILES)
    if kind in ("WRITE", "FILL"):
        region = rng.choice(list(Region))
        size = INFO.tiles[k].regions[region]
        offset = rng.randrange(size)
        count = rng.randint(1, min(size - offset, 8))
        make = _safe_route_dest if region == Region.ROUTE_DEST else _word
        if region == Region.ROUTE_INDEX:
            def make(rng):
                return rng.randrange(1024) | rng.randint(0, 2) << 10 | rng.choice((0, TO_HOST))
        if kind == "WRITE":
            client.write(k, region, offset, [make(rng) for _ in range(count)])
        else:
            client.fill(k, region, offset, count, make(rng))
    elif kind == "READ":
        client.read(k, rng.choice(list(Region)), 0, 1)
    elif kind == "RUN":
        client.run(rng.randint(0, 4), _random_events(rng))
    elif kind == "OUTPUTS":
        client.outputs(rng.randint(0, 5))
    elif kind == "RESET":
        client.ok(Command.RESET)
    elif kind == "INFO":
        assert ChipInfo.decode(client.ok(Command.INFO)) == INFO
    else:
        client.status()


def _corrupted_op(client: Client, rng: random.Random, kind: str) -> None:
    """A request that must be refused: corrupted on the way (only errors CRC-16 always
    detects), or well framed but wrong."""
    if kind == "bit errors":
        command, payload = rng.choice(_valid_requests(rng))
        body = _body(client.next_seq(), command, payload)
        nbits, length = 8 * len(body), rng.randint(1, 16)
        pattern = 1 | rng.getrandbits(length) | 1 << (length - 1)
        bad = (int.from_bytes(body, "big") ^ pattern << rng.randint(0, nbits - length))
        bad = bad.to_bytes(len(body), "big")
        client.bad_frame(slip_encode(bad), Status.CRC, bad[0], bad[1])
    elif kind == "cut short":
        body = _body(client.next_seq(), rng.choice(list(Command)))[:rng.randint(1, 3)]
        client.bad_frame(slip_encode(body), Status.SHORT, 0, 0)
    elif kind == "bad escape":
        command, payload = rng.choice(_valid_requests(rng))
        seq = client.next_seq()
        inner = _escape(_body(seq, command, payload))
        k = rng.randint(0, len(inner))
        while k and _dangling_escape(inner[:k]):
            k -= 1
        client.bad_frame(bytes([END]) + inner[:k] + bytes([ESC, rng.randrange(0xC1, 0xDC)])
                         + inner[k:] + bytes([END]), Status.ESCAPE, seq, command)
    elif kind == "oversize":
        command, payload = rng.choice(_valid_requests(rng))
        seq = client.next_seq()
        body = _body(seq, command, payload + bytes(MAX_FRAME + rng.randint(-1, 50)
                                                   - len(payload) - 2))
        client.bad_frame(slip_encode(body), Status.OVERSIZE, seq, command)
    else:
        cases = [c for c in _CASES if c[1] is None]
        _send_case(client, rng.choice(cases))


_CASES = _nak_cases(random.Random(BASE_SEED + 601))
VALID_KINDS = ["WRITE", "FILL", "READ", "RUN", "OUTPUTS", "RESET", "INFO", "STATUS"]
CORRUPT_KINDS = ["bit errors", "cut short", "bad escape", "oversize", "refused request"]
SESSIONS = Counter()


@settings(derandomize=True, max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(VALID_KINDS + CORRUPT_KINDS), st.integers(0, 2**32)),
                min_size=1, max_size=30))
def test_random_sessions_corrupted_requests_change_nothing(steps):
    client = Client()
    _random_state(client, random.Random(steps[0][1]))
    snapshot = client.snapshot()
    for kind, seed in steps:
        rng = random.Random(seed)
        if kind in VALID_KINDS:
            _valid_op(client, rng, kind)
            snapshot = None
            SESSIONS["valid requests"] += 1
        else:
            if snapshot is None:
                snapshot = client.snapshot()
            _corrupted_op(client, rng, kind)
            assert client.snapshot() == snapshot, kind
            SESSIONS["corrupted requests"] += 1
    client.status()
    SESSIONS["sessions"] += 1


def test_zz_report_counts():
    """Not a check: the tally of what this module tried (run pytest with -s to see it)."""
    if SESSIONS:
        _tally("sessions", protocol_session_requests=SESSIONS["valid requests"],
               protocol_session_corrupted_requests=SESSIONS["corrupted requests"])
    print("\nprotocol tests tried: " + ", ".join(f"{k} = {v:,}" for k, v in
                                                sorted(CHECKED.items())))
