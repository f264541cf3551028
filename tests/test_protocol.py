"""The host link's wire protocol (``firmware/protocol.py``): the CRC, SLIP framing and the
receiver under corruption. The chip behind it is tested in ``test_link_model.py``.
Randomized parts use hypothesis with ``derandomize=True`` or ``random.Random`` seeded from
``BASE_SEED`` (``SPIKEFAB_TEST_SEED``); what was tried is tallied with ``record_checked`` and
printed by the last test.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import assume, given, settings, strategies as st

from conftest import BASE_SEED, ends_inside_escape, record_checked
from spikefab.firmware.protocol import (AXONS_PER_INPUT, SlipDecoder, crc16, frame,
                                        input_payload, parse_body, parse_input, slip_encode)
from spikefab.hdl.abi import (CRC_RESIDUE, END, ESC, ESC_END, ESC_ESC, MAX_FRAME, MAX_OUTPUTS,
                              MAX_PAYLOAD, Command, ProtocolError, Status)

#: What this module tried, summed over its tests (printed by the last test).
CHECKED: Counter = Counter()


def _tally(name: str, **counts: int) -> None:
    CHECKED.update(counts)
    record_checked(f"protocol-{name}", **counts)


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


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.integers(0, (1 << 64) - 1), st.integers(0, 0xFFFF),
       st.lists(st.integers(0, 0xFFFF), max_size=AXONS_PER_INPUT))
def test_input_payload_round_trip_and_length(tiles, ticks, axons):
    payload = input_payload(tiles, ticks, axons)
    assert parse_input(payload) == (tiles, ticks, axons)
    frame(1, 9, payload)   # the most axons still fit a frame
    for cut in (payload[:9], payload[:-1]) if axons else (payload[:9],):
        with pytest.raises(ProtocolError):
            parse_input(cut)


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


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.one_of(st.binary(min_size=1, max_size=300),
                 st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=300).map(bytes)),
       requests)
def test_garbage_before_a_frame_is_cut_off(garbage, req):
    garbage = garbage.replace(bytes([END]), b"")
    # ESC right before END is the documented-but-unflagged case: see
    # test_esc_before_end_is_a_bad_escape.
    assume(garbage and not ends_inside_escape(garbage))
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
    while k and ends_inside_escape(inner[:k]):   # not in the middle of an escape pair
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


def test_zz_report_counts():
    """Not a check: the tally of what this module tried (run pytest with -s to see it)."""
    print("\nprotocol tests tried: " + ", ".join(f"{k} = {v:,}" for k, v in
                                                sorted(CHECKED.items())))
