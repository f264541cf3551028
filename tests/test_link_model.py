"""The golden model of a chip behind the host link (``sim/link_model.py``), spoken to through
the wire protocol's codec (``firmware/protocol.py``) by a checking client
(``link_client.py``): every command's semantics, on a small two-tile chip. Every NAK and
random sessions of corrupted requests: ``test_link_model_naks.py``.
"""

from __future__ import annotations

import random
import struct

import pytest

from conftest import BASE_SEED
from spikefab.firmware.protocol import input_payload, slip_encode, unpack_outputs
from spikefab.hdl.abi import (MAX_PAYLOAD, MAX_RUN_TICKS, PROTOCOL_VERSION, REGISTERS, ChipInfo,
                              Command, CoreShape, LinkStatus, ProtocolError, Region, Register, Status,
                              pack_event_word, unpack_event_word)
from spikefab.hdl.chip import TileConfig
from spikefab.hdl.host_link import chip_info

from link_client import (HEADER, INFO, SHAPES, TILES, TO_HOST, WB, WORD_MASK, Client, crc_body,
                         signed_value, tally, random_word, random_state)


def test_zero_bytes_after_the_crc_are_refused():
    client = Client()
    client.write(0, Region.MEMBRANE, 0, [0, 0, 0, 0])
    before = client.read(0, Region.MEMBRANE, 0, 4)
    body = crc_body(0x42, Command.WRITE, struct.pack(HEADER, 0, Region.MEMBRANE, 0)
                 + (5).to_bytes(WB, "little"))
    # The four zero bytes could be a line glitch just before the closing END.
    [(seq, status, echo)] = client.exchange(slip_encode(body + bytes(WB)))
    client.frames += 1
    if status != Status.OK:
        client.naks += 1
        client.bad_frames += 1
    assert client.read(0, Region.MEMBRANE, 0, 4) == before   # actually: [5, crc, 0, 0]
    assert (seq, status, echo) == (0x42, Status.CRC, bytes([Command.WRITE]))



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
        return signed_value(word, tile.v_bits) & mask
    if region == Region.ACCUMULATOR:    # a write clears I
        return 0
    if region == Region.REGISTER:
        if offset >= Register.EVENTS:    # a write clears a counter
            return 0
        valid = {Register.THRESHOLD: 1 <= word <= shape.v_max, Register.LEAK: word < tile.v_bits,
                 Register.RESET: word in (0, 1)}[offset]
        return word if valid else old
    if region == Region.ROUTE_INDEX:
        return word & ((1 << 22) - 1)
    return word & 0xFFFF


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
        words = [random_word(rng) for _ in range(count)]
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
    tally("write-read", protocol_words_read_back=words_checked)


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
        client.write(0, Region.REGISTER, Register.THRESHOLD, [bad])
        assert registers() == [vmax, 0, 0]
    for good in (1, 1234, vmax):
        client.write(0, Region.REGISTER, Register.THRESHOLD, [good])
        assert registers() == [good, 0, 0]
    for leak in (16, 17, 0xFFFF_FFFF):
        client.write(0, Region.REGISTER, Register.LEAK, [leak])
        assert registers() == [vmax, 0, 0]
    client.write(0, Region.REGISTER, Register.LEAK, [15])
    for reset in (2, 3, 0xFFFF_FFFF):
        client.write(0, Region.REGISTER, Register.RESET, [reset])
        assert registers() == [vmax, 15, 0]
    client.write(0, Region.REGISTER, Register.RESET, [1])
    assert registers() == [vmax, 15, 1]
    # One WRITE of three words: each judged on its own.
    client.write(0, Region.REGISTER, Register.THRESHOLD, [0, 3, 1])
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
    client.write(1, Region.REGISTER, Register.THRESHOLD, [50])
    client.write(1, Region.ROUTE_INDEX, 1, [TO_HOST])
    # Inject only: the event waits in the accumulator.
    assert client.run(0, [(1, 0, 2)]) == (0, 0)
    assert client.region(1, Region.ACCUMULATOR) == [0, 100, 0]
    assert client.read(1, Region.REGISTER, Register.EVENTS, 2) == [1, 3]   # events, sops (= N)
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
    assert client.read(1, Region.REGISTER, Register.EVENTS, 3) == [1, 3, 4]   # events, sops, ticks
    assert client.read(0, Region.REGISTER, Register.TICKS, 1) == [4]
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
    client.write(0, Region.REGISTER, Register.THRESHOLD, [50])
    client.write(0, Region.BIAS, 2, [60])
    client.write(0, Region.ROUTE_INDEX, 0, [5 | 1 << 10, 0, 9 | 1 << 10])
    client.write(0, Region.ROUTE_DEST, 5, [1 | 0 << 3 | 2 << 6])
    client.write(0, Region.ROUTE_DEST, 9, [5 | 0 << 3 | 0 << 6])
    # Tile (1, 0) neuron 1: axon 2 with weight 100, threshold 50, to the host.
    client.write(1, Region.SYNAPSE, 0, _synapse_words(1, {(2, 1): 100}))
    client.write(1, Region.REGISTER, Register.THRESHOLD, [50])
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
    client.write(0, Region.REGISTER, Register.THRESHOLD, [1])
    client.fill(0, Region.ROUTE_INDEX, 0, 4, TO_HOST)
    # A run whose outputs do not all fit keeps none of them.
    assert client.run(5) == (5, 0)
    status = client.status()
    assert (status.output_pending, status.output_drops) == (0, 20)
    assert client.run(3) == (8, 12)
    assert client.run(2) == (10, 12)   # 8 more do not fit in the 4 places left: all dropped
    assert client.run(1) == (11, 16)
    status = client.status()
    assert (status.output_pending, status.output_drops) == (16, 28)
    first = client.outputs(3)
    rest = client.outputs()
    # Within a tick the order may differ from the hardware's; across ticks oldest first.
    assert [tick for *_, tick in first + rest] == sorted(tick for *_, tick in first + rest)
    assert sorted(first + rest) == sorted((n, 0, t) for t in [5, 6, 7, 10] for n in range(4))
    assert client.outputs(0) == [] and client.outputs() == []
    assert client.status().output_pending == 0


def test_reset_clears_membranes_accumulators_and_outputs_only():
    rng = random.Random(BASE_SEED + 402)
    client = Client()
    random_state(client, rng)
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
    client.write(2, Region.REGISTER, Register.THRESHOLD, [40])
    client.write(2, Region.ROUTE_INDEX, 2, [TO_HOST])
    # Tile (1, 1) is number 3: neuron 1 spikes on its bias alone.
    client.write(3, Region.BIAS, 1, [100])
    client.write(3, Region.REGISTER, Register.THRESHOLD, [100])
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
    for bad in (b"", data[:10], b"XPKF" + data[4:], data[:4] + bytes([PROTOCOL_VERSION + 1]) + data[5:],
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


def test_input_is_the_run_of_its_events(base_seed):
    """INPUT feeds each axon to every tile it names, tile by tile in bit order: the same answer
    and the same chip as the RUN of those events, from random states."""
    for trial in range(20):
        seed = base_seed + 400 + trial
        rng = random.Random(seed)
        a, b = Client(), Client()
        random_state(a, random.Random(seed))
        random_state(b, random.Random(seed))
        assert a.snapshot() == b.snapshot()
        tiles = rng.randint(1, 3)
        limit = min(INFO.tiles[k].axons for k in TILES if tiles >> k & 1)
        axons = [rng.randrange(limit) for _ in range(rng.randint(0, 12))]
        ticks = rng.randint(0, 3)
        events = [(k % INFO.cols, k // INFO.cols, axon) for axon in axons
                  for k in TILES if tiles >> k & 1]
        assert INFO.input_events(tiles, axons) == events
        got = a.ok(Command.INPUT, input_payload(tiles, ticks, axons))
        assert got == struct.pack("<IH", *b.run(ticks, events)), seed
        assert a.snapshot() == b.snapshot(), seed


# ==== repeats, seq 0, the timeout, bounded runs ====

def _again(client: Client, command: int, payload: bytes = b""):
    """Send the request just sent once more, with its seq: (status, answer)."""
    from spikefab.firmware.protocol import frame
    [(seq, status, answer)] = client.exchange(frame(client.seq, command, payload))
    assert seq == client.seq
    client.frames += 1
    return Status(status), answer


def test_a_repeated_request_is_answered_not_executed_again():
    """RUN, INPUT, WRITE, FILL, RESET and OUTPUTS repeated with their seq: the first answer
    again and nothing done twice (ticks, accumulators, memories, the output queue); INFO,
    READ and STATUS are executed again; STATUS counts the repeats."""
    client = Client()
    client.fill(0, Region.BIAS, 0, 4, 1)
    client.write(0, Region.REGISTER, Register.THRESHOLD, [1])
    client.fill(0, Region.ROUTE_INDEX, 0, 4, TO_HOST)
    payload = struct.pack("<HH", 2, pack_event_word(1, 0, 2))
    first = client.ok(Command.RUN, payload)
    assert _again(client, Command.RUN, payload) == (Status.OK, first)
    assert struct.unpack("<IH", first) == (2, 8)
    payload = input_payload(0b10, 1, [3])
    first = client.ok(Command.INPUT, payload)
    assert _again(client, Command.INPUT, payload) == (Status.OK, first)
    assert client.status().ticks == 3       # 2 + 1: neither run twice
    taken = client.ok(Command.OUTPUTS, struct.pack("<H", 5))
    assert _again(client, Command.OUTPUTS, struct.pack("<H", 5)) == (Status.OK, taken)
    status = client.status()
    assert status.output_pending == 12 - 5 and client.link.repeats == 3   # RUN, INPUT, OUTPUTS
    assert _again(client, Command.STATUS)[1] != status.encode()   # afresh: counts moved
    rest = unpack_outputs(client.ok(Command.OUTPUTS, struct.pack("<H", 100)))
    assert len(rest) == 7
    client.ok(Command.RESET)
    client.fill(1, Region.MEMBRANE, 0, 3, 9)
    assert _again(client, Command.FILL, struct.pack(HEADER + "I", 1, Region.MEMBRANE, 0, 3)
                  + (9).to_bytes(WB, "little"))[0] == Status.OK
    client.write(1, Region.MEMBRANE, 0, [4])
    assert client.read(1, Region.MEMBRANE, 0, 3) == [4, 9, 9]   # the repeat wrote nothing


def test_seq_0_is_refused_and_a_short_frame_is_answered_with_it():
    client = Client()
    client.bad_frame(slip_encode(crc_body(0, Command.STATUS)), Status.SEQUENCE, 0,
                     Command.STATUS, bad=False)
    client.bad_frame(slip_encode(b"\x05\x01"), Status.SHORT, 0, 0)
    client.status()


def test_the_line_falling_silent_drops_a_half_frame():
    client = Client()
    body = slip_encode(crc_body(client.next_seq(), Command.STATUS))
    assert client.link.receive(body[:3]) == b""
    client.link.idle()
    client.link.idle()            # nothing half received: nothing dropped
    [(seq, status, _)] = client.exchange(body[3:])   # the tail alone: too short
    assert (seq, status) == (0, Status.SHORT)
    client.frames, client.bad_frames, client.naks = 1, 1, 1
    client.status()
    assert client.link.timeouts == 1


@pytest.mark.parametrize("command, payload", [
    (Command.RUN, struct.pack("<H", MAX_RUN_TICKS + 1)),
    (Command.INPUT, input_payload(1, 0xFFFF, [1])),
])
def test_runs_are_bounded(command, payload):
    client = Client()
    client.nak(command, payload, Status.ARGUMENT)
    ok = payload[:-2] + struct.pack("<H", MAX_RUN_TICKS) if command == Command.RUN \
        else input_payload(1, MAX_RUN_TICKS, [1])
    client.ok(command, ok)
    assert client.status().ticks == MAX_RUN_TICKS
