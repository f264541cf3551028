"""Every NAK of the golden chip behind the host link (``sim/link_model.py``) leaves its state
as it was; random sessions of valid and corrupted requests never change anything a corrupted
request reaches. Seeded from ``BASE_SEED`` (``SPIKEFAB_TEST_SEED``).
"""

from __future__ import annotations

import random
import struct
from collections import Counter

from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import BASE_SEED, ends_inside_escape
from spikefab.firmware.protocol import frame, input_payload, slip_encode
from spikefab.hdl.abi import (ADDRESS_BYTES, END, ESC, ESC_END, ESC_ESC, INPUT_HEAD, MAX_FRAME,
                              MAX_OUTPUTS, ChipInfo, Command, Region, Register, Status, pack_event_word,
                              unpack_event_word)

from link_client import (HEADER, INFO, TILES, WB, Client, crc_body, slip_inner, tally, random_word,
                         random_state, random_events, safe_route_dest, random_route_index)


# ==== 5. every NAK leaves the state as it was ====

def _valid_requests(rng: random.Random) -> list[tuple[int, bytes]]:
    """One request of every command, as (command, payload)."""
    k = rng.choice(TILES)
    return [
        (Command.INFO, b""),
        (Command.STATUS, b""),
        (Command.RESET, b""),
        (Command.WRITE, struct.pack(HEADER, k, Region.MEMBRANE, 1)
         + b"".join(random_word(rng).to_bytes(WB, "little") for _ in range(2))),
        (Command.WRITE, struct.pack(HEADER, 0, Region.SYNAPSE, 0)
         + bytes([END, ESC] * (2 * WB))),
        (Command.READ, struct.pack(HEADER + "H", k, Region.SYNAPSE, 0, 3)),
        (Command.FILL, struct.pack(HEADER + "I", k, Region.BIAS, 0, 3)
         + (9).to_bytes(WB, "little")),
        (Command.RUN, struct.pack("<HHH", 3, pack_event_word(0, 0, 1), pack_event_word(1, 0, 3))),
        (Command.INPUT, input_payload(3, 2, [1, 3, 0])),
        (Command.OUTPUTS, struct.pack("<H", 100)),
    ]


def _nak_cases(rng: random.Random):
    """(name, wire, status, seq, echoed command, counts as a bad frame) for every way a request
    can be refused. ``seq`` None: the next one the client picks."""
    cases = []
    for command, payload in _valid_requests(rng):
        body = crc_body(0x33, command, payload)
        # CRC: one corrupted byte anywhere (the seq and command bytes included).
        for index in sorted({0, 1, 2, len(body) // 2, len(body) - 2, len(body) - 1}):
            for flip in (0x01, 0x80, rng.randrange(1, 256)):
                bad = bytearray(body)
                bad[index] ^= flip
                cases.append((f"CRC {command.name} byte {index}", slip_encode(bytes(bad)),
                              Status.CRC, bad[0], bad[1], True))
        # ESCAPE: an invalid escape anywhere; the byte after ESC is dropped, the rest kept.
        inner = slip_inner(body)
        for k in sorted({0, 1, 2, len(inner) // 2, len(inner)}):
            while k and ends_inside_escape(inner[:k]):
                k -= 1
            for bad in (0x00, ESC, rng.choice([b for b in range(256)
                                               if b not in (END, ESC_END, ESC_ESC)])):
                cases.append((f"ESCAPE {command.name} at {k}",
                              bytes([END]) + inner[:k] + bytes([ESC, bad]) + inner[k:]
                              + bytes([END]), Status.ESCAPE, 0x33, command, True))
        # OVERSIZE: the same request with its payload padded past MAX_FRAME.
        for total in (MAX_FRAME + 1, MAX_FRAME + 2, 700):
            big = crc_body(0x34, command, payload + bytes(total - 4 - len(payload)))
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
            Command.INPUT: input_payload(3, 2, [1, 0]) + b"\x00",
            Command.OUTPUTS: struct.pack("<H", 5) + b"\x00\x00"}
    valid_length = {Command.INFO: lambda n: n == 0, Command.STATUS: lambda n: n == 0,
                    Command.RESET: lambda n: n == 0,
                    Command.WRITE: lambda n: n >= ADDRESS_BYTES + WB and
                    (n - ADDRESS_BYTES) % WB == 0,
                    Command.READ: lambda n: n == ADDRESS_BYTES + 2,
                    Command.FILL: lambda n: n == ADDRESS_BYTES + 4 + WB,
                    Command.RUN: lambda n: n >= 2 and n % 2 == 0,
                    Command.INPUT: lambda n: n >= INPUT_HEAD.size and n % 2 == 0,
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
    # INPUT naming no tile (whatever its axons: the argument comes before the address).
    for axons in ([], [1], [0xFFFF]):
        request(f"ARGUMENT INPUT no tile {axons}", Command.INPUT, input_payload(0, 1, axons),
                Status.ARGUMENT)

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
            good = [pack_event_word(*e) for e in random_events(rng, 4)]
            good.insert(rng.randint(0, len(good)), bad)
            request(f"ADDRESS RUN {unpack_event_word(bad)} ticks {ticks}", Command.RUN,
                    struct.pack(f"<H{len(good)}H", ticks, *good), Status.ADDRESS)
    # INPUT: a tile past the last, or one axon that a tile of the set lacks (tile 0 has 8,
    # tile 1 has 4), anywhere among good ones: ADDRESS, and none injected.
    for tiles in (1 << len(INFO.tiles), 0b111, 1 << 63, 0xFFFF_FFFF_FFFF_FFFF):
        request(f"ADDRESS INPUT tiles 0x{tiles:x}", Command.INPUT, input_payload(tiles, 1, [0]),
                Status.ADDRESS)
    for tiles, bad in ((1, 8), (2, 4), (3, 4), (3, 7), (1, 1 << 10), (3, 0xFFFF)):
        for ticks in (0, 3):
            good = [rng.randrange(4) for _ in range(4)]
            good.insert(rng.randint(0, len(good)), bad)
            request(f"ADDRESS INPUT tiles {tiles} axon {bad} ticks {ticks}", Command.INPUT,
                    input_payload(tiles, ticks, good), Status.ADDRESS)
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
    random_state(client, rng)
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
    tally("naks", protocol_nak_cases=len(cases))


def test_garbage_then_a_request_gets_a_nak_then_the_answer():
    client = Client()
    [(s1, nak, echo), (s2, ok, answer)] = client.exchange(
        b"\x01\x02\x03\x04\x05" + frame(0x77, Command.INFO))
    assert (s1, nak, echo) == (1, Status.CRC, b"\x02") and (s2, ok) == (0x77, Status.OK)
    assert ChipInfo.decode(answer) == INFO
    client.frames, client.bad_frames, client.naks = 2, 1, 1
    client.status()


def test_routed_events_beyond_the_budget_are_delivered_and_counted():
    """Past a core's budget events still add (I wraps at its width) and count in OVER_BUDGET."""
    client = Client()
    # Tile (0, 0) neuron 0 spikes every tick (bias = threshold = 10) and has 5 routes to tile
    # (1, 0), whose events_per_tick is 4.
    client.write(0, Region.BIAS, 0, [10])
    client.write(0, Region.REGISTER, Register.THRESHOLD, [10])
    client.write(0, Region.ROUTE_INDEX, 0, [0 | 5 << 10])
    client.write(0, Region.ROUTE_DEST, 0, [1 | a << 6 for a in (0, 1, 2, 3, 0)])
    assert client.run(1) == (1, 0)
    events, _, _, _, over_budget = client.read(1, Region.REGISTER, Register.EVENTS, 5)
    assert (events, over_budget) == (5, 1)


# ==== 6. random sessions: corrupted requests never change anything ====

def _valid_op(client: Client, rng: random.Random, kind: str) -> None:
    k = rng.choice(TILES)
    if kind in ("WRITE", "FILL"):
        region = rng.choice(list(Region))
        size = INFO.tiles[k].regions[region]
        offset = rng.randrange(size)
        count = rng.randint(1, min(size - offset, 8))
        make = {Region.ROUTE_DEST: safe_route_dest,
                Region.ROUTE_INDEX: random_route_index}.get(region, random_word)
        if kind == "WRITE":
            client.write(k, region, offset, [make(rng) for _ in range(count)])
        else:
            client.fill(k, region, offset, count, make(rng))
    elif kind == "READ":
        client.read(k, rng.choice(list(Region)), 0, 1)
    elif kind == "RUN":
        client.run(rng.randint(0, 4), random_events(rng))
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
        body = crc_body(client.next_seq(), command, payload)
        nbits, length = 8 * len(body), rng.randint(1, 16)
        pattern = 1 | rng.getrandbits(length) | 1 << (length - 1)
        bad = (int.from_bytes(body, "big") ^ pattern << rng.randint(0, nbits - length))
        bad = bad.to_bytes(len(body), "big")
        client.bad_frame(slip_encode(bad), Status.CRC, bad[0], bad[1])
    elif kind == "cut short":
        body = crc_body(client.next_seq(), rng.choice(list(Command)))[:rng.randint(1, 3)]
        client.bad_frame(slip_encode(body), Status.SHORT, 0, 0)
    elif kind == "bad escape":
        command, payload = rng.choice(_valid_requests(rng))
        seq = client.next_seq()
        inner = slip_inner(crc_body(seq, command, payload))
        k = rng.randint(0, len(inner))
        while k and ends_inside_escape(inner[:k]):
            k -= 1
        client.bad_frame(bytes([END]) + inner[:k] + bytes([ESC, rng.randrange(0xC1, 0xDC)])
                         + inner[k:] + bytes([END]), Status.ESCAPE, seq, command)
    elif kind == "oversize":
        command, payload = rng.choice(_valid_requests(rng))
        seq = client.next_seq()
        body = crc_body(seq, command, payload + bytes(MAX_FRAME + rng.randint(-1, 50)
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
    random_state(client, random.Random(steps[0][1]))
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
    tally("sessions", protocol_session_requests=SESSIONS["valid requests"],
           protocol_session_corrupted_requests=SESSIONS["corrupted requests"])
