"""The RTL host link (cocotb + Verilator) answers exactly as the golden LinkModel does.

Two chips (2 x 1 meshes, the cores on clocks 9.7x and 1.7x slower than the mesh; one with
narrow memory words, one with the ULX3S profile's 16-byte words, registered synapse reads and a
queue of request bytes), both with the encoder, each get a seeded sequence of requests: every
command, random memory traffic over every region, a network that spikes (fed by RUN, INPUT and
ENCODE), and every kind of bad frame. Each answer must equal the model's byte for byte
(OUTPUTS, and ENCODE's report: the same events; their order within a tick may differ), and
after every bad frame the whole chip state, read back, must be unchanged.
"""

import dataclasses
import random

import pytest

from spikefab.firmware.protocol import (SlipDecoder, frame, input_payload, parse_body,
                                        slip_encode)
from spikefab.hdl.abi import (ENCODE_HEAD, END, ESC, MAX_FRAME, MAX_OUTPUTS, MAX_RUN_TICKS,
                              REPORT_BYTES, RUN_ANSWER, Command, CoreShape, EncodeFlag,
                              LinkStatus, Region, Register, Status, pack_event_word)
from spikefab.hdl.chip import Chip, TileConfig
from spikefab.sim.link_model import LinkModel
from spikefab.sim.link_rtl import SimLink, link_build

from conftest import record_checked
from link_client import mutate, random_encode

TILES = {(0, 0): TileConfig(CoreShape(24, 6, w_bits=8, v_bits=12), lanes=4, destinations=16),
         (1, 0): TileConfig(CoreShape(8, 5, w_bits=4, v_bits=16), lanes=2, destinations=8)}
# As the ULX3S profile builds them: 16-byte memory words (wider than the request header) and
# registered synapse reads.
WIDE = {(0, 0): TileConfig(CoreShape(24, 6, w_bits=8, v_bits=12), lanes=16, destinations=16,
                           register_reads=True),
        (1, 0): TileConfig(CoreShape(8, 5, w_bits=4, v_bits=16), lanes=8, destinations=8,
                           register_reads=True)}


@pytest.fixture(scope="module", params=["narrow", "wide"])
def build(request):
    tiles = TILES if request.param == "narrow" else WIDE
    # The wide chip queues request bytes while it executes one, as the ULX3S's does.
    return link_build(Chip(cols=2, rows=1, tiles=tiles), output_depth=8, encoder=True,
                      rx_queue=0 if request.param == "narrow" else 48,
                      label=f"link-2x1-{request.param}")


def _address(tile, region, offset):
    return bytes([tile, region]) + offset.to_bytes(4, "little")


def _sorted_report(request, answer):
    """An ENCODE's answer with the output records of its report sorted."""
    *_, flags, _, count = ENCODE_HEAD.unpack_from(request)
    if not flags & EncodeFlag.REPORT:
        return answer
    end = len(answer) - REPORT_BYTES * count
    records = sorted(answer[k:k + 4] for k in range(RUN_ANSWER.size, end, 4))
    return answer[:RUN_ANSWER.size] + b"".join(records) + answer[end:]


def _encode_head(tiles, *, ticks=1, drain=0, flags=0, report=(0, 0)):
    """An ENCODE's head (its groups to follow), state 9."""
    return ENCODE_HEAD.pack(tiles, ticks, 9, drain, flags, *report)


class Session:
    """Sends the same bytes to the RTL and to the model; compares the answers."""

    def __init__(self, link, model, seed):
        self.link, self.model, self.seed = link, model, seed
        self.seq = 0
        self.exchanges = 0
        self.naks = {}
        self.requests = SlipDecoder()   # the frames sent, as the chip cuts them

    def request(self, command, payload=b""):
        self.seq = self.seq % 255 + 1
        return frame(self.seq, command, payload)

    def send(self, data: bytes, *, what: str):
        got, want = self.link.exchange(data), self.model.receive(data)
        self.exchanges += 1
        sent = self.requests.feed(data)
        got_frames = [parse_body(b, e) for b, e in SlipDecoder().feed(got)]
        want_frames = [parse_body(b, e) for b, e in SlipDecoder().feed(want)]
        assert len(got_frames) == len(want_frames) == len(sent), \
            (what, self.seed, got.hex(), want.hex())
        for (gs, gc, gp), (ws, wc, wp), (body, _) in zip(got_frames, want_frames, sent):
            assert (gs, gc) == (ws, wc), (what, self.seed, got.hex(), want.hex())
            command = body[1] if len(body) > 1 else None
            if wc == Status.OK and command == Command.OUTPUTS:
                # Outputs of one tick may leave the mesh in another order.
                gp = sorted(gp[k:k + 4] for k in range(0, len(gp), 4))
                wp = sorted(wp[k:k + 4] for k in range(0, len(wp), 4))
            if wc == Status.OK and command == Command.ENCODE:
                # Its report's outputs likewise (between the answer's head and membranes).
                gp, wp = _sorted_report(body[2:-2], gp), _sorted_report(body[2:-2], wp)
            if wc == Status.OK and command == Command.STATUS:
                # The cycle count aside: the model has no clock.
                gp, wp = (dataclasses.replace(LinkStatus.decode(x), cycles=0) for x in (gp, wp))
            assert gp == wp, (what, self.seed, got.hex(), want.hex())
            if wc != Status.OK:
                self.naks[Status(wc).name] = self.naks.get(Status(wc).name, 0) + 1
        return want_frames

    def idle(self, cycles):
        """The line silent for ``cycles``: past the link's timeout, a half frame is dropped."""
        self.link.idle(cycles)
        if cycles >= 1 << self.link.timeout_log2:
            self.model.idle()
            self.requests.discard()

    def snapshot(self):
        """Every word of every region of every tile, and the chip's counters, via READ."""
        info = self.model.info
        words = []
        for t, tile in enumerate(info.tiles):
            for region, size in enumerate(tile.regions):
                for offset in range(0, size, info.max_read_words):
                    count = min(info.max_read_words, size - offset)
                    payload = _address(t, region, offset) + count.to_bytes(2, "little")
                    [(_, status, answer)] = self.send(self.request(Command.READ, payload),
                                                      what="snapshot")
                    assert status == Status.OK
                    words.append(answer)
        [(_, _, status)] = self.send(self.request(Command.STATUS), what="status")
        return words, status[:14]   # chip counters; the link's own change with every frame


def _random_words(rng, count, word_bytes):
    return b"".join(rng.getrandbits(8 * word_bytes).to_bytes(word_bytes, "little")
                    for _ in range(count))


def _spiking_network(s, rng):
    """A network that spikes: sane parameters, random weights and routes, tile 1 to host."""
    info = s.model.info
    wb = info.word_bytes
    for t, tile in enumerate(info.tiles):
        s.send(s.request(Command.WRITE, _address(t, Region.REGISTER, 0) + b"".join(
            v.to_bytes(wb, "little") for v in (rng.randint(4, 20), rng.randint(0, 3),
                                               rng.randint(0, 1), 0, 0, 0, 0, 0))),
               what="registers")
        for offset in range(tile.regions[Region.SYNAPSE]):
            word = 0
            for j in range(tile.lanes):
                word |= (rng.randint(-2, (1 << (tile.w_bits - 1)) - 1)
                         & ((1 << tile.w_bits) - 1)) << (j * tile.w_bits)
            s.send(s.request(Command.WRITE, _address(t, Region.SYNAPSE, offset)
                             + word.to_bytes(wb, "little")), what="synapse")
        dests = tile.regions[Region.ROUTE_DEST]
        for n in range(tile.neurons):
            entry = rng.randrange(dests) | rng.randint(0, 2) << 10 | (t == 1) << 21
            s.send(s.request(Command.WRITE, _address(t, Region.ROUTE_INDEX, n)
                             + entry.to_bytes(wb, "little")), what="route")
        for d in range(dests):
            x = rng.randrange(2)
            axon = rng.randrange(info.tiles[x].axons)
            s.send(s.request(Command.WRITE, _address(t, Region.ROUTE_DEST, d)
                             + (x | axon << 6).to_bytes(wb, "little")), what="dest")
    s.send(s.request(Command.RESET), what="RESET")


def test_rtl_host_link_equals_model(build, base_seed):
    seed = base_seed + 7
    rng = random.Random(seed)
    model = LinkModel(build.info)
    info = model.info
    wb = info.word_bytes
    with SimLink(build, periods_ps={"core_0_0": 97_000, "core_1_0": 17_000}) as link:
        s = Session(link, model, seed)
        s.send(s.request(Command.INFO), what="INFO")
        # Random traffic over every region (registers: also invalid parameter values).
        for _ in range(60):
            t = rng.randrange(len(info.tiles))
            region = rng.randrange(len(Region))
            size = info.tiles[t].regions[region]
            offset = rng.randrange(size)
            count = rng.randint(1, min(size - offset, 12))
            op = rng.choice(["write", "read", "fill"])
            if op == "write":
                s.send(s.request(Command.WRITE, _address(t, region, offset)
                                 + _random_words(rng, count, wb)), what="WRITE")
            elif op == "read":
                s.send(s.request(Command.READ, _address(t, region, offset)
                                 + count.to_bytes(2, "little")), what="READ")
            else:
                s.send(s.request(Command.FILL, _address(t, region, offset)
                                 + count.to_bytes(4, "little") + _random_words(rng, 1, wb)),
                       what="FILL")

        # Events, and in the same breath a read of the accumulators they land in (tile 0's
        # core runs 9.7x slower than the mesh): the read must come after every event.
        events = b"".join(pack_event_word(0, 0, rng.randrange(info.tiles[0].axons))
                          .to_bytes(2, "little") for _ in range(info.tiles[0].events_per_tick))
        s.send(s.request(Command.RUN, bytes(2) + events)
               + s.request(Command.READ, _address(0, Region.ACCUMULATOR, 0)
                           + info.tiles[0].neurons.to_bytes(2, "little")),
               what="RUN, then READ at once")

        _spiking_network(s, rng)
        outputs = 0
        for tick in range(30):
            events = [pack_event_word(x, 0, rng.randrange(info.tiles[x].axons))
                      for x in (rng.randrange(2) for _ in range(rng.randint(0, 10)))]
            payload = (rng.randint(0, 2)).to_bytes(2, "little") + b"".join(
                e.to_bytes(2, "little") for e in events)
            roll = rng.random()
            tiles = rng.randint(1, 3)
            limit = min(info.tiles[k].axons for k in range(2) if tiles >> k & 1)
            if roll < 0.4:
                [(_, status, answer)] = s.send(s.request(Command.RUN, payload), what="RUN")
            elif roll < 0.7:   # the same input to one tile or both, each axon on every tile named
                axons = [rng.randrange(limit) for _ in range(rng.randint(0, 10))]
                [(_, status, answer)] = s.send(s.request(
                    Command.INPUT, input_payload(tiles, rng.randint(0, 2), axons)),
                    what="INPUT")
            else:              # pixels, the spikes drawn by the chip
                [(_, status, answer)] = s.send(s.request(Command.ENCODE,
                                                         random_encode(rng, info)),
                                               what="ENCODE")
            assert status == Status.OK, (seed, status)
            if rng.random() < 0.5:
                [(_, _, answer)] = s.send(s.request(
                    Command.OUTPUTS, rng.randint(0, 6).to_bytes(2, "little")), what="OUTPUTS")
                outputs += len(answer) // 4
            if rng.random() < 0.2:
                s.send(s.request(Command.STATUS), what="STATUS")
            if rng.random() < 0.2:
                t = rng.randrange(2)
                s.send(s.request(Command.READ, _address(t, Region.MEMBRANE, 0)
                                 + info.tiles[t].neurons.to_bytes(2, "little")), what="V")
        assert outputs > 0, f"the network never reached the host (seed {seed})"

        # Bad frames: every NAK, the chip unchanged after each.
        before = s.snapshot()
        while True:   # the escape cases splice the raw body: it must not hold END or ESC
            good = s.request(Command.WRITE, _address(0, Region.MEMBRANE, 0)
                             + _random_words(rng, 1, wb))
            body = SlipDecoder().feed(good)[0][0]
            if END not in body and ESC not in body:
                break
        bad = {
            "crc": slip_encode(body[:-3] + bytes([body[-3] ^ 0x10]) + body[-2:]),
            "short": slip_encode(body[:3]),
            "oversize": slip_encode(bytes(rng.getrandbits(8) for _ in range(MAX_FRAME + 9))),
            "escape": bytes([END]) + body[:4] + bytes([ESC, 0x42]) + body[4:] + bytes([END]),
            "escape-end": bytes([END]) + body[:4] + bytes([ESC, END]),
            "command": s.request(0x7E),
            "length-info": s.request(Command.INFO, b"\x00"),
            "length-write": s.request(Command.WRITE, _address(0, 1, 0) + b"\x01"),
            "length-read": s.request(Command.READ, _address(0, 1, 0)),
            "length-run": s.request(Command.RUN, b"\x01\x00\x05"),
            "argument-read": s.request(Command.READ, _address(0, 1, 0) + b"\x00\x00"),
            "argument-read-many": s.request(Command.READ, _address(0, 1, 0) +
                                            (info.max_read_words + 1).to_bytes(2, "little")),
            "argument-fill": s.request(Command.FILL, _address(0, 1, 0) + bytes(4 + wb)),
            "argument-outputs": s.request(Command.OUTPUTS, (MAX_OUTPUTS + 1).to_bytes(2, "little")),
            "address-tile": s.request(Command.WRITE, _address(2, 1, 0) + bytes(wb)),
            "address-region": s.request(Command.WRITE, _address(0, 7, 0) + bytes(wb)),
            "address-offset": s.request(Command.FILL, _address(1, Region.BIAS, 5)
                                        + (1).to_bytes(4, "little") + bytes(wb)),
            "address-count": s.request(Command.WRITE, _address(0, Region.MEMBRANE, 4)
                                       + bytes(3 * wb)),
            "address-event": s.request(Command.RUN, (1).to_bytes(2, "little") + b"".join(
                pack_event_word(*e).to_bytes(2, "little")
                for e in [(0, 0, 1), (1, 0, 2), (1, 0, 8), (0, 0, 3)])),
            "address-event-tile": s.request(Command.RUN, (0).to_bytes(2, "little")
                                            + pack_event_word(0, 1, 0).to_bytes(2, "little")),
            "length-input": s.request(Command.INPUT, input_payload(3, 1)[:-1]),
            "length-input-odd": s.request(Command.INPUT, input_payload(3, 1, [1]) + b"\x00"),
            "argument-input": s.request(Command.INPUT, input_payload(0, 1, [1])),
            "argument-run-ticks": s.request(Command.RUN, (MAX_RUN_TICKS + 1).to_bytes(2, "little")),
            "argument-input-ticks": s.request(Command.INPUT, input_payload(1, 0xFFFF, [1])),
            "sequence": frame(0, Command.RUN, (1).to_bytes(2, "little")),
            "address-input-tile": s.request(Command.INPUT, input_payload(0b101, 1, [1])),
            "address-input-tile-high": s.request(Command.INPUT, input_payload(1 << 63, 1)),
            # Tile 0 has every axon below 24, tile 1 below 8: one axon too many for the pair.
            "address-input-axon": s.request(Command.INPUT, input_payload(
                3, 1, [0, 7, info.tiles[1].axons, 2])),
            "address-input-axon-high": s.request(Command.INPUT, input_payload(1, 0, [1 << 15])),
            "length-encode-head": s.request(Command.ENCODE, _encode_head(3)[:-1]),
            "length-encode-value": s.request(Command.ENCODE, _encode_head(3)
                                             + bytes([1, 2, 200])),
            "length-encode-count": s.request(Command.ENCODE, _encode_head(3)
                                             + bytes([1, 1, 200, 4])),
            "argument-encode": s.request(Command.ENCODE, _encode_head(0) + b"\x00\x01\x80"),
            "argument-encode-ticks": s.request(Command.ENCODE,
                                               _encode_head(1, ticks=MAX_RUN_TICKS + 1)),
            "argument-encode-drain": s.request(Command.ENCODE,
                                               _encode_head(1, drain=MAX_RUN_TICKS + 1)),
            "argument-encode-flags": s.request(Command.ENCODE, _encode_head(1, flags=4)),
            "argument-encode-report-none": s.request(Command.ENCODE, _encode_head(
                1, flags=EncodeFlag.REPORT, report=(0, 0))),
            "address-encode-tile": s.request(Command.ENCODE, _encode_head(4)),
            "address-encode-report-tile": s.request(Command.ENCODE, _encode_head(
                1, flags=EncodeFlag.REPORT, report=(2, 1))),
            "address-encode-report-count": s.request(Command.ENCODE, _encode_head(
                1, flags=EncodeFlag.CLEAR | EncodeFlag.REPORT, report=(1, 6))),
            # Tile 1 has 8 axons: axon 8 of the pair is off it (tile 0 has 24).
            "address-encode-axon": s.request(Command.ENCODE, _encode_head(3)
                                             + bytes([0, 9]) + bytes(range(1, 10))),
            "garbage": bytes(rng.getrandbits(8) | 1 for _ in range(40)) + bytes([END]),
        }
        for name, data in bad.items():
            [(_, status, _)] = s.send(data, what=name)
            assert status != Status.OK, (name, seed)
            assert s.snapshot() == before, f"{name} changed the chip (seed {seed})"
        # Then a correct frame works, and a RUN's events are judged afresh (they are checked
        # as the frame arrives: no verdict may linger from the refused RUNs).
        [(_, status, _)] = s.send(good, what="good after bad")
        assert status == Status.OK
        [(_, status, _)] = s.send(s.request(Command.RUN, (0).to_bytes(2, "little") + b"".join(
            pack_event_word(0, 0, a).to_bytes(2, "little") for a in (1, 2))), what="run after bad")
        assert status == Status.OK, f"a good RUN refused after bad ones (seed {seed})"
        [(_, status, _)] = s.send(s.request(Command.INPUT, input_payload(
            1, 0, [info.tiles[1].axons])), what="input after bad")
        assert status == Status.OK, f"a good INPUT refused after bad ones (seed {seed})"
        [(_, status, _)] = s.send(s.request(Command.ENCODE, _encode_head(1)
                                            + bytes([0, 1, 255, 6, 1, 255])),
                                  what="encode after bad")
        assert status == Status.OK, f"a good ENCODE refused after bad ones (seed {seed})"
        assert s.snapshot() != before
        assert set(s.naks) == {"CRC", "SHORT", "OVERSIZE", "ESCAPE", "COMMAND", "LENGTH",
                               "ARGUMENT", "ADDRESS", "SEQUENCE"}, s.naks
    record_checked("host-link", host_link_exchanges=s.exchanges,
                   host_link_naks=sum(s.naks.values()))


def test_fan_in_past_the_budget_is_order_free(build):
    """Found by fuzzing: 25 routed events (23 for axon 0, 2 for axon 1: the route count wraps
    around the 16-entry table) reach a core whose budget is 24. The RTL kept the first 24 to
    arrive and the model chose its own 24, so they disagreed; now every event is delivered (I
    wraps at its width) and both answer I[0] = 2 (W[1][0] = 1), EVENTS = 25, OVER_BUDGET = 1."""
    model = LinkModel(build.info)
    wb = model.info.word_bytes
    tile = model.info.tiles[0]
    assert tile.events_per_tick == 24
    rows = -(-tile.neurons // tile.lanes)   # synapse words per axon

    def write(seq, region, offset, word):
        return frame(seq, Command.WRITE, _address(0, region, offset) + word.to_bytes(wb, "little"))

    frames = [
        write(1, Region.BIAS, 0, 2047),                  # = the threshold at reset: it spikes
        write(2, Region.ROUTE_INDEX, 0, 0 | 25 << 10),   # start 0, 25 destinations
        write(3, Region.ROUTE_DEST, 0, 0 | 1 << 6),      # (0, 0) axon 1; the rest axon 0
        write(4, Region.SYNAPSE, rows, 1),               # W[1][0] = 1
        frame(5, Command.RUN, (1).to_bytes(2, "little")),
        frame(6, Command.READ, _address(0, Region.ACCUMULATOR, 0) + (1).to_bytes(2, "little")),
        frame(7, Command.READ, _address(0, Region.REGISTER, Register.EVENTS)
              + (5).to_bytes(2, "little")),
    ]
    if wb == 4:   # the frames as the fuzzer found them
        assert b"".join(frames[:6]).hex() == (
            "c00102000200000000ff070000d094c0" "c0020200050000000000640000ed38c0"
            "c0030200060000000040000000ea3ec0" "c00402000002000000010000002f73c0"
            "c0050501001fbbc0" "c006030003000000000100ab8ec0")
    with SimLink(build, periods_ps={"core_0_0": 97_000, "core_1_0": 17_000}) as link:
        s = Session(link, model, seed=0)
        answers = [s.send(data, what=f"frame {k + 1}") for k, data in enumerate(frames)]
    assert all(status == Status.OK for [(_, status, _)] in answers)
    assert int.from_bytes(answers[5][0][2], "little") == 2
    counters = answers[6][0][2]
    events, _, _, _, over_budget = (int.from_bytes(counters[k:k + wb], "little")
                                    for k in range(0, 5 * wb, wb))
    assert (events, over_budget) == (25, 1)


def _valid_request(s, rng):
    """A request the chip accepts, any command, with arguments in range."""
    info = s.model.info
    wb = info.word_bytes
    t = rng.randrange(len(info.tiles))
    region = rng.choice([r for r in Region if r != Region.REGISTER] + [Region.REGISTER] * 2)
    size = info.tiles[t].regions[region]
    offset = rng.randrange(size)
    count = rng.randint(1, min(size - offset, 6))
    kind = rng.choice(["WRITE", "READ", "FILL", "RUN", "RUN", "INPUT", "ENCODE", "OUTPUTS",
                       "OUTPUTS", "STATUS", "RESET", "INFO"])
    if kind == "WRITE":
        if region == Region.REGISTER:   # sane parameters, so that the network keeps spiking
            return s.request(Command.WRITE, _address(t, region, 3) + bytes(wb))
        return s.request(Command.WRITE, _address(t, region, offset)
                         + _random_words(rng, count, wb))
    if kind == "READ":
        return s.request(Command.READ, _address(t, region, offset) + count.to_bytes(2, "little"))
    if kind == "FILL":
        if region in (Region.REGISTER, Region.ROUTE_INDEX, Region.ROUTE_DEST):
            region, offset, count = Region.MEMBRANE, 0, 1
        return s.request(Command.FILL, _address(t, region, offset)
                         + count.to_bytes(4, "little") + _random_words(rng, 1, wb))
    if kind == "RUN":
        events = [pack_event_word(x, 0, rng.randrange(info.tiles[x].axons))
                  for x in (rng.randrange(2) for _ in range(rng.randint(0, 8)))]
        return s.request(Command.RUN, rng.randint(0, 2).to_bytes(2, "little") + b"".join(
            e.to_bytes(2, "little") for e in events))
    if kind == "INPUT":
        tiles = rng.randint(1, 3)
        limit = min(info.tiles[k].axons for k in range(2) if tiles >> k & 1)
        return s.request(Command.INPUT, input_payload(
            tiles, rng.randint(0, 2), [rng.randrange(limit) for _ in range(rng.randint(0, 6))]))
    if kind == "ENCODE":
        return s.request(Command.ENCODE, random_encode(rng, info))
    if kind == "OUTPUTS":
        # All pending or none: a part of one tick's events would depend on the order they
        # reached the link (docs/semantics.md, "Output order"), which differs from the model's.
        most = rng.choice([0, info.output_depth, MAX_OUTPUTS])
        return s.request(Command.OUTPUTS, most.to_bytes(2, "little"))
    return s.request(Command[kind])


def test_rtl_link_under_fuzz_repeats_and_timeouts(build, base_seed):
    """A long random session against the RTL and the model at once: valid requests of every
    command, repeats of the last request (answered, not executed again), requests mutated as a
    bad line would (flips, drops, duplicates, truncation, bad escapes, frames split or run
    together, garbage), seq 0, half frames left to the inter-byte timeout, and half frames
    finished after a short pause. Every answer equal to the model's (OUTPUTS' events as a set
    within the answer), the counters equal in STATUS, and every memory equal at the end."""
    seed = base_seed + 11
    rng = random.Random(seed)
    model = LinkModel(build.info)
    timeout = 1 << build.timeout_log2
    mutated = repeats = timeouts = 0
    with SimLink(build, periods_ps={"core_0_0": 97_000, "core_1_0": 17_000}) as link:
        s = Session(link, model, seed)
        s.send(s.request(Command.INFO), what="INFO")
        _spiking_network(s, rng)
        last = None
        while mutated < 1000:
            batch = []
            for _ in range(rng.randint(1, 8)):
                roll = rng.random()
                if roll < 0.35 or last is None:
                    last = _valid_request(s, rng)
                    batch.append(last)
                elif roll < 0.45:
                    batch.append(last)            # its answer "lost": sent again
                    repeats += 1
                elif roll < 0.9:
                    batch.append(mutate(rng, _valid_request(s, rng)))
                    mutated += 1
                else:
                    batch.append(frame(0, Command.STATUS))
            s.send(b"".join(batch), what="batch")
            if rng.random() < 0.1:   # a half frame, then silence past the timeout
                wire = _valid_request(s, rng)
                s.send(wire[:rng.randrange(2, len(wire) - 1)], what="half frame")
                s.idle(2 * timeout)
                timeouts += 1
            elif rng.random() < 0.05:   # a pause inside a frame, well short of the timeout
                wire = _valid_request(s, rng)
                cut = rng.randrange(1, len(wire) - 1)
                s.send(wire[:cut], what="first half")
                s.idle(timeout // 4)
                s.send(wire[cut:], what="second half")
        s.send(s.request(Command.STATUS), what="final STATUS")
        s.snapshot()   # every word, read through both: equal
        assert model.timeouts == timeouts and model.repeats >= repeats // 2, seed
    record_checked("host-link-fuzz", host_link_mutated_frames=mutated,
                   host_link_repeats=repeats, host_link_timeouts=timeouts)
