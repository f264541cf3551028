"""The host link's parts alone in Amaranth's simulator, each against the codec or the link
model: the output queue, the RUN event checker, the request checker, the response path and the
command executor."""

import random
from types import SimpleNamespace

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from spikefab.firmware.protocol import SlipDecoder, frame, run_payload
from spikefab.hdl.abi import (MAX_OUTPUTS, MAX_RUN_TICKS, AERPacket, Command, CoreShape, OutputRecord, PacketKind,
                              Region, Status, pack)
from spikefab.hdl.chip import TileConfig, chip_request_layout
from spikefab.hdl.host_link import chip_info
from spikefab.hdl.host_link_checks import RequestChecker, RunEventChecker
from spikefab.hdl.host_link_executor import CommandExecutor
from spikefab.hdl.host_link_frames import ResponsePath
from spikefab.hdl.host_link_outputs import OutputQueue
from spikefab.sim.link_model import LinkModel

from conftest import raises_in_constructor


def _tiles(lanes=(4, 2)):
    """Two tiles of different shapes (as tests/test_host_link_rtl.py's chips)."""
    return {(0, 0): TileConfig(CoreShape(24, 6, w_bits=8, v_bits=12), lanes=lanes[0],
                               destinations=16),
            (1, 0): TileConfig(CoreShape(8, 5, w_bits=4, v_bits=16), lanes=lanes[1],
                               destinations=8)}


def _info(lanes=(4, 2)):
    return chip_info(cols=2, rows=1, host=(0, 0), tiles=_tiles(lanes), output_depth=8)


def _body(seq, command, payload):
    """A frame's body as the receiver stores it: seq, command, payload, CRC."""
    ((body, _),) = SlipDecoder().feed(frame(seq, command, payload))
    return body


@pytest.mark.parametrize("depth, registered", [(1, False), (5, False), (1, True), (2, True),
                                               (6, True)])
def test_output_queue_keeps_what_it_counts_in_order(base_seed, depth, registered):
    """Events arriving at random, taken at random, with commits, rewinds and clears between:
    the events come out in order (a rewind sends those taken since the last commit again),
    ``pending`` and ``taken`` are the counts from the cycle after each change (two after a
    take), an event is
    dropped (and counted) exactly when the queue holds ``depth`` sent or unsent, and with
    nothing taken the whole depth fills before a drop."""
    seed = base_seed + 20 + depth
    rng = random.Random(seed)
    dut = OutputQueue(depth, registered=registered)
    width = AERPacket.size

    async def bench(ctx):
        unsent, sent, drops, seen = [], [], 0, 0
        took = False   # an event was taken in the cycle before: its counts move in this one
        for phase in ("fill", "random", "drain"):
            for cycle in range({"fill": 4 * (depth + 2), "random": 1500, "drain": 80}[phase]):
                if phase == "fill":
                    arrive, take, act = cycle % 4 == 0, False, None
                else:
                    arrive = phase == "random" and rng.random() < 0.3
                    take = rng.random() < 0.5
                    act = None if took else rng.choice(["commit", "rewind", "clear"] + [None] * 12)
                payload = rng.getrandbits(width)
                ctx.set(dut.host_out.valid, arrive)
                ctx.set(dut.host_out.payload.as_value(), payload)
                ctx.set(dut.events.ready, take)
                for name in ("commit", "rewind", "clear"):
                    ctx.set(getattr(dut, name), act == name)
                assert ctx.get(dut.host_out.ready)
                valid = ctx.get(dut.events.valid)
                assert not (valid and act), f"an event offered during {act} (seed {seed})"
                took = bool(take and valid)
                if took:
                    assert ctx.get(dut.events.payload.as_value()) == unsent[0], f"seed {seed}"
                    sent.append(unsent.pop(0))
                    seen += 1
                full = len(unsent) + len(sent) == depth   # as the cycle began
                await ctx.tick()
                if act == "commit":
                    sent = []
                elif act == "rewind":
                    unsent, sent = sent + unsent, []
                elif act == "clear":
                    unsent, sent = [], []
                if arrive:
                    dropped = ctx.get(dut.output_drops) - drops
                    assert dropped == full, f"seed {seed}"
                    drops += dropped
                    if not dropped:
                        unsent.append(payload)
                assert (ctx.get(dut.pending), ctx.get(dut.taken)) == \
                    (len(unsent) + took, len(sent) - took), f"seed {seed}"
            if phase == "fill":
                assert (len(unsent), drops) == (depth, 2)
        assert seen > 20 and unsent == [], f"seed {seed}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("depth, registered", [(1, False), (5, True), (8, False)])
def test_output_queue_keeps_a_runs_events_all_or_none(base_seed, depth, registered):
    """Runs of events (``mark``, events arriving, then ``rollback`` when one was dropped),
    with the events taken and committed between runs: a run whose events all fit is kept
    whole, one that overflows leaves the queue as it was before the run and counts every one
    of its events as dropped."""
    seed = base_seed + 30 + depth
    rng = random.Random(seed)
    dut = OutputQueue(depth, registered=registered)
    width = AERPacket.size

    async def bench(ctx):
        unsent, drops, overflows = [], 0, 0
        for run in range(60):
            ctx.set(dut.mark, 1)
            await ctx.tick()
            ctx.set(dut.mark, 0)
            events = [rng.getrandbits(width) for _ in range(rng.randint(0, depth + 1))]
            for event in events:
                ctx.set(dut.host_out.valid, 1)
                ctx.set(dut.host_out.payload.as_value(), event)
                await ctx.tick()
                ctx.set(dut.host_out.valid, 0)
                await ctx.tick().repeat(rng.randrange(1, 3))
            fits = len(unsent) + len(events) <= depth
            assert ctx.get(dut.overflowed) == (not fits), f"seed {seed}"
            if not fits:
                ctx.set(dut.rollback, 1)
                await ctx.tick()
                ctx.set(dut.rollback, 0)
                drops += len(events)
                overflows += 1
            else:
                unsent += events
            await ctx.tick()
            assert ctx.get(dut.pending) == len(unsent), f"seed {seed}"
            assert ctx.get(dut.output_drops) == drops, f"seed {seed}"
            for _ in range(rng.randrange(len(unsent) + 1)):   # OUTPUTS, then its commit
                ctx.set(dut.events.ready, 1)
                await ctx.tick().until(dut.events.valid)
                assert ctx.get(dut.events.payload.as_value()) == unsent.pop(0), f"seed {seed}"
                ctx.set(dut.events.ready, 0)
            await ctx.tick()   # the last event taken is counted
            ctx.set(dut.commit, 1)
            await ctx.tick()
            ctx.set(dut.commit, 0)
        assert overflows > 5, f"seed {seed}"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_run_event_checker_covers_every_event_but_the_crc(base_seed):
    """Frames stored byte by byte, with gaps or back to back: two cycles after the last
    byte, ``events_ok`` says whether every event of the frame (taken as a RUN) is on the chip,
    whatever the CRC bytes are; releasing the frame clears the verdict."""
    rng = random.Random(base_seed + 21)
    info = _info()
    dut = RunEventChecker(info)
    cases = []
    for k in range(40):
        events = []
        for _ in range(rng.randrange(5)):
            bad = rng.random() < 0.15
            x, y = rng.randrange(2 + bad), rng.randrange(1 + bad)
            axons = info.tiles[x].axons if x < 2 and y < 1 else 1
            axon = rng.choice([axons, 1023]) if bad else rng.randrange(axons)
            events.append((x, y, axon))
        body = _body(k, Command.RUN, run_payload(rng.getrandbits(16), events))
        cases.append((body, all(info.accepts_event(*e) for e in events)))
    assert {ok for _, ok in cases} == {False, True}

    async def bench(ctx):
        for body, ok in cases:
            for addr, byte in enumerate(body):
                for _ in range(rng.choice([0, 0, 1, 3])):
                    await ctx.tick()
                ctx.set(dut.store, 1)
                ctx.set(dut.store_addr, addr)
                ctx.set(dut.store_data, byte)
                await ctx.tick()
                ctx.set(dut.store, 0)
            await ctx.tick()
            assert ctx.get(dut.events_ok) == ok, body.hex()
            ctx.set(dut.release, 1)
            await ctx.tick()
            ctx.set(dut.release, 0)
            assert ctx.get(dut.events_ok) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _requests(info, rng, n):
    """Request bodies, good and bad in every field the checker judges (RUN's events good)."""
    wb = info.word_bytes
    # Just past the widest region's bits: a field must not pass on its low bits alone.
    edge = 1 << max(size for t in info.tiles for size in t.regions).bit_length()
    bodies = []
    for k in range(n):
        command = rng.choice(list(Command) + [0x00, 0x42])
        t = rng.choice([0, len(info.tiles) - 1, len(info.tiles), 255])
        region = rng.choice([0, rng.randrange(len(Region)), len(Region), 200])
        size = info.tiles[t].regions[region] if t < len(info.tiles) and region < len(Region) \
            else 4
        offset = rng.choice([0, rng.randrange(size), size - 1, size, edge, edge + 1, 1 << 31,
                             (1 << 32) - 1])
        count = rng.choice([0, 1, rng.randint(1, 4), max(size - offset, 1),
                            max(size - offset, 1) + 1, edge, (1 << 16) - 1])
        address = bytes([t, region]) + offset.to_bytes(4, "little")
        if command == Command.WRITE:
            payload = address + bytes(rng.getrandbits(8) for _ in range(min(count, 4) * wb))
        elif command == Command.READ:
            payload = address + rng.choice([count, info.max_read_words,
                                             info.max_read_words + 1]).to_bytes(2, "little")
        elif command == Command.FILL:
            payload = address + rng.choice([count, 0, 1 << 31]).to_bytes(4, "little") \
                + bytes(rng.getrandbits(8) for _ in range(wb))
        elif command == Command.RUN:
            ticks = rng.choice([0, 1, MAX_RUN_TICKS, MAX_RUN_TICKS + 1, (1 << 16) - 1])
            payload = run_payload(ticks, [(rng.randrange(2), 0, rng.randrange(8))
                                          for _ in range(rng.randrange(3))])
        elif command == Command.OUTPUTS:
            payload = rng.choice([0, 3, MAX_OUTPUTS, MAX_OUTPUTS + 1]).to_bytes(2, "little")
        else:
            payload = b""
        if rng.random() < 0.2 and command != Command.RUN:   # a length it does not take
            payload = payload[:rng.randrange(len(payload) + 1)] + bytes(rng.randrange(3))
        bodies.append(_body(k % 255 + 1, command, payload))
    return bodies


@pytest.mark.parametrize("lanes", [(4, 2), (16, 8)])
def test_request_checker_judges_as_the_model_does(base_seed, lanes):
    """Every verdict (COMMAND, LENGTH, ARGUMENT, ADDRESS or OK) equal to LinkModel's for the
    same request, whatever stale bytes fill the header past the frame."""
    rng = random.Random(base_seed + 22)
    info = _info(lanes)
    dut = RequestChecker(info)
    bodies = _requests(info, rng, 300)
    model = LinkModel(info)
    want = []
    for body in bodies:
        ((answer, _),) = SlipDecoder().feed(model.handle(body))
        want.append(answer[1])
    assert set(want) >= {Status.OK, Status.COMMAND, Status.LENGTH, Status.ARGUMENT,
                         Status.ADDRESS}
    request = dut.request

    async def bench(ctx):
        for body, status in zip(bodies, want):
            header = body[2:12] + bytes(rng.getrandbits(8) for _ in range(10))
            ctx.set(request.command, body[1])
            ctx.set(request.payload, int.from_bytes(header[:10], "little"))
            ctx.set(request.length, len(body))
            if rng.random() < 0.5:
                await ctx.tick()
            ctx.set(request.measure, 1)
            await ctx.tick()
            ctx.set(request.measure, 0)
            ctx.set(request.check, 1)
            await ctx.tick()
            ctx.set(request.check, 0)
            assert ctx.get(request.verdict) == status, body.hex()
            assert ctx.get(request.payload_length) == len(body) - 4
            if body[1] == Command.WRITE and status == Status.OK:
                assert ctx.get(request.write_count) * info.word_bytes == len(body) - 10

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_response_path_sends_each_piece_little_endian(base_seed):
    """Pieces offered with gaps, the sender taking bytes at random: the bytes of every piece
    in order, little-endian, ``last`` on the final byte of a piece marked last; the piece's
    transfer is its last byte's; the other pieces' values do not matter."""
    rng = random.Random(base_seed + 23)
    pieces = {"head": 2, "nak": 3, "one": 1, "long": 8, "word": 16}
    dut = ResponsePath(pieces)
    sent = [(name, rng.random() < 0.3, rng.getrandbits(8 * n))
            for name, n in (rng.choice(list(pieces.items())) for _ in range(80))]
    want = [(byte, int(last and k == pieces[name] - 1))
            for name, last, value in sent
            for k, byte in enumerate(value.to_bytes(pieces[name], "little"))]
    got = []

    async def offer(ctx):
        for name, last, value in sent:
            for _ in range(rng.choice([0, 0, 2])):
                await ctx.tick()
            ctx.set(dut.piece.valid, 1)
            ctx.set(dut.piece.payload.select.as_value(), 1 << list(pieces).index(name))
            ctx.set(dut.piece.payload.last, last)
            while True:
                for other, n in pieces.items():
                    ctx.set(dut.values[other], value if other == name
                            else rng.getrandbits(8 * n))
                done = ctx.get(dut.piece.ready)
                await ctx.tick()
                if done:
                    break
            ctx.set(dut.piece.valid, 0)
        await ctx.tick().repeat(10)

    async def take(ctx):
        while True:
            ctx.set(dut.response.ready, rng.random() < 0.6)
            if ctx.get(dut.response.ready) and ctx.get(dut.response.valid):
                got.append((ctx.get(dut.response.payload.data),
                            ctx.get(dut.response.payload.last)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(offer)
    sim.add_testbench(take, background=True)
    sim.run()
    assert got == want, f"seed {base_seed + 23}"


def test_command_executor_acts_only_on_checked_requests(base_seed):
    """The executor (with its request checker) against a played environment: the frame
    buffer, the response path taking pieces at random, the chip bus answering reads late, the
    host port, the tick handshake, a chip that stays busy a while after each tick or event
    and whose spikes land in the output queue a few cycles after it goes quiet. Each
    request's pieces, bus words, events and ticks are what the command asks for (RUN's answer
    counts every spike); a refused request does nothing but answer its NAK."""
    rng = random.Random(base_seed + 24)
    info = _info()
    wb = info.word_bytes
    request = chip_request_layout(_tiles())
    bus = wiring.Signature({"req": Out(stream.Signature(request)),
                            "resp": In(stream.Signature(request["data"].shape))})
    dut = CommandExecutor(info, bus)
    checker = RequestChecker(info)
    m = Module()
    m.submodules.executor, m.submodules.checker = dut, checker
    wiring.connect(m, dut.request, checker.request)
    names = list(dut.pieces)
    mesh_drops, output_drops = 0x1234_5678, 0x9ABC_DEF0
    outputs = [(x, 0, n, t) for t, (x, n) in enumerate([(0, 5), (1, 2), (0, 1)])]
    queue, sent = [], []   # the output queue: events to send; sent since the last commit

    def address(t, region, offset):
        return bytes([t, region]) + offset.to_bytes(4, "little")

    words = [rng.getrandbits(8 * wb) for _ in range(3)]
    word_bytes = b"".join(w.to_bytes(wb, "little") for w in words)

    async def execute(ctx, body, status=Status.OK, events_ok=1, spikes=()):
        """Offer a frame and play the environment until it is released; ``spikes``: what
        the chip sends the host after each tick of a RUN (``(x, y, neuron, tick)``), and how
        many cycles after it goes quiet (after the spike before)."""
        seen = SimpleNamespace(pieces=[], writes=[], reads=[], events=[], ticks=0, naks=0,
                               calm=None)
        answers, noisy, landing = [], 0, []   # landing: [cycles of quiet to wait, spike]
        calm = 0    # cycles since the chip was last busy (-1) or a spike arrived (0)
        ctx.set(dut.frame.valid, 1)
        ctx.set(dut.frame.payload.length, len(body))
        ctx.set(dut.frame.payload.status, status)
        ctx.set(dut.events_ok, events_ok)
        for _ in range(20_000):
            for port, chance in ((dut.piece.ready, 0.5), (dut.bus.req.ready, 0.6),
                                 (dut.host_in.ready, 0.6), (dut.tick.ready, 0.4)):
                ctx.set(port, rng.random() < chance)
            ctx.set(dut.bus.resp.valid, bool(answers))
            ctx.set(dut.bus.resp.payload, answers[0] if answers else 0)
            quiet = noisy == 0
            arriving = quiet and bool(landing) and landing[0][0] == 0
            ctx.set(dut.quiet, quiet)
            ctx.set(dut.arriving, arriving)
            calm = -1 if not quiet else 0 if arriving else calm + 1
            if seen.calm is None and ctx.get(dut.piece.valid):
                seen.calm = calm    # when the response begins
            ctx.set(dut.outputs.valid, bool(queue))
            ctx.set(dut.outputs.payload.as_value(), queue[0] if queue else 0)
            ctx.set(dut.pending, len(queue))
            ctx.set(dut.taken, len(sent))
            noisy = max(noisy - 1, 0)
            if ctx.get(dut.piece.valid) and ctx.get(dut.piece.ready):
                name = names[ctx.get(dut.piece.payload.select.as_value()).bit_length() - 1]
                seen.pieces.append((name, ctx.get(dut.piece.payload.last),
                                    ctx.get(dut.values[name])))
            if ctx.get(dut.bus.req.valid) and ctx.get(dut.bus.req.ready):
                req = ctx.get(dut.bus.req.payload)
                where = (int(req.tile), int(req.region), int(req.offset))
                if req.write:
                    seen.writes.append((*where, int(req.data)))
                else:
                    seen.reads.append(where)
                    answers.append(rng.getrandbits(len(dut.bus.resp.payload)))
            if answers and ctx.get(dut.bus.resp.ready):   # taken with the word's last byte
                seen.pieces[-1] += (answers.pop(0),)
            if ctx.get(dut.host_in.valid) and ctx.get(dut.host_in.ready):
                event = ctx.get(dut.host_in.payload)
                assert event.kind == PacketKind.EVENT
                seen.events.append((event.x, event.y, event.body.event.axon))
                noisy = rng.randint(1, 6)
            if arriving:
                queue.append(landing.pop(0)[1])
            elif quiet and landing:
                landing[0][0] -= 1
            if ctx.get(dut.tick.valid) and ctx.get(dut.tick.ready):
                seen.ticks += 1
                noisy = rng.randint(1, 12)
                if seen.ticks <= len(spikes):
                    (x, y, n, t), delay = spikes[seen.ticks - 1]
                    landing.append([delay, pack(AERPacket, kind=PacketKind.OUTPUT, x=x, y=y,
                                                 body={"output": {"neuron": n, "tick": t}})])
            if queue and ctx.get(dut.outputs.ready):
                sent.append(queue.pop(0))
            if ctx.get(dut.commit):
                sent.clear()
            if ctx.get(dut.rewind):
                queue[:0] = sent
                sent.clear()
            if ctx.get(dut.clear):
                queue.clear()
                sent.clear()
            seen.naks += ctx.get(dut.nak)
            released, addr = ctx.get(dut.frame.ready), ctx.get(dut.read_addr)
            await ctx.tick()
            ctx.set(dut.read_data, body[addr] if addr < len(body) else 0)
            if released:
                break
        else:
            raise AssertionError(f"no answer to {body.hex()}")
        ctx.set(dut.frame.valid, 0)
        assert not ctx.get(dut.busy)
        return seen

    def nothing_done(seen):
        return (seen.writes, seen.reads, seen.events, seen.ticks) == ([], [], [], 0)

    async def bench(ctx):
        ctx.set(dut.mesh_drops, mesh_drops)
        ctx.set(dut.output_drops, output_drops)
        ctx.set(dut.ticks, 77)
        seen = await execute(ctx, _body(1, Command.INFO, b""))
        encoded = info.encode()
        assert seen.pieces == [("ok", 0, 1)] + [("info", int(k == len(encoded) - 1), byte)
                                                 for k, byte in enumerate(encoded)]
        seen = await execute(ctx, _body(2, Command.WRITE, address(1, Region.MEMBRANE, 1)
                                        + word_bytes[:2 * wb]))
        assert seen.writes == [(1, Region.MEMBRANE, 1, words[0]),
                               (1, Region.MEMBRANE, 2, words[1])]
        assert seen.pieces == [("ok", 1, 2)]
        seen = await execute(ctx, _body(3, Command.FILL, address(0, Region.BIAS, 2)
                                        + (3).to_bytes(4, "little") + word_bytes[-wb:]))
        assert seen.writes == [(0, Region.BIAS, 2 + k, words[2]) for k in range(3)]
        seen = await execute(ctx, _body(4, Command.READ, address(0, Region.SYNAPSE, 7)
                                        + (2).to_bytes(2, "little")))
        assert seen.reads == [(0, Region.SYNAPSE, 7), (0, Region.SYNAPSE, 8)]
        assert [p[:2] for p in seen.pieces] == [("ok", 0), ("word", 0), ("word", 1)]
        assert [p[2] for p in seen.pieces[1:]] == [p[3] for p in seen.pieces[1:]]
        events = [(1, 0, 3), (0, 0, 23), (1, 0, 0)]
        # RUN: its events injected, its ticks run, and its answer after four cycles of a quiet
        # chip with nothing arriving (the chip's quiet seen a cycle late: ``calm`` 6), so that
        # its last spikes have landed, whether the chip went quiet last or a spike came last
        # (seen waiting for quiet or settling).
        for seq, ticks, injected, spikes in [
                (5, 3, events, [(outputs[0], 2), (outputs[1], 1)]), (15, 2, events[:1], []),
                (16, 1, [], [(outputs[2], 1)])]:
            pending = len(queue) + len(spikes)
            seen = await execute(ctx, _body(seq, Command.RUN, run_payload(ticks, injected)),
                                 spikes=spikes)
            assert (seen.events, seen.ticks, seen.calm) == (injected, ticks, 6)
            assert seen.pieces == [("ok", 0, seq), ("ticks", 0, 77), ("pending", 1, pending)]
        # The last RUN again (same seq, same command): answered, not run.
        seen = await execute(ctx, _body(16, Command.RUN, run_payload(1, [])))
        assert nothing_done(seen) and seen.pieces == [("ok", 0, 16), ("ticks", 0, 77),
                                                      ("pending", 1, len(queue))]
        records = [pack(OutputRecord, x=x, y=y, neuron=n, tick=t) for x, y, n, t in outputs]
        seen = await execute(ctx, _body(6, Command.OUTPUTS, (2).to_bytes(2, "little")))
        assert seen.pieces == [("ok", 0, 6)] + [
            ("output", int(k == 1), records[k]) for k in range(2)]
        assert len(queue) == 1 and len(sent) == 2
        # Its repeat answers the same events again; the next request forgets them.
        seen = await execute(ctx, _body(6, Command.OUTPUTS, (2).to_bytes(2, "little")))
        assert seen.pieces == [("ok", 0, 6)] + [
            ("output", int(k == 1), records[k]) for k in range(2)]
        assert len(queue) == 1 and len(sent) == 2
        seen = await execute(ctx, _body(17, Command.OUTPUTS, (0).to_bytes(2, "little")))
        assert seen.pieces == [("ok", 1, 17)] and len(queue) == 1 and sent == []
        # A repeated WRITE writes nothing; seq 0 is refused.
        body = _body(20, Command.WRITE, address(1, Region.BIAS, 0) + word_bytes[:wb])
        assert (await execute(ctx, body)).writes == [(1, Region.BIAS, 0, words[0])]
        seen = await execute(ctx, body)
        assert nothing_done(seen) and seen.pieces == [("ok", 1, 20)]
        seen = await execute(ctx, _body(0, Command.WRITE, address(1, Region.BIAS, 0)
                                        + word_bytes[:wb]))
        assert nothing_done(seen) and seen.pieces == [
            ("nak", 1, int.from_bytes(bytes([0, Status.SEQUENCE, Command.WRITE]), "little"))]
        # Refused: a bad CRC, a SHORT frame, a command that takes no payload given one, a
        # RUN whose events are not all on the chip, an address outside the region.
        for body, status, events_ok, nak in [
                (_body(7, Command.WRITE, address(0, Region.BIAS, 0) + word_bytes[:wb]),
                 Status.CRC, 1, (7, Status.CRC, Command.WRITE)),
                (bytes([8, Command.INFO]), Status.SHORT, 1, (0, Status.SHORT, 0)),
                (_body(9, Command.INFO, b"\x00"), Status.OK, 1, (9, Status.LENGTH, Command.INFO)),
                (_body(10, Command.RUN, run_payload(1, events)), Status.OK, 0,
                 (10, Status.ADDRESS, Command.RUN)),
                (_body(11, Command.READ, address(1, Region.MEMBRANE, 4)
                       + (2).to_bytes(2, "little")), Status.OK, 1,
                 (11, Status.ADDRESS, Command.READ))]:
            seen = await execute(ctx, body, status, events_ok)
            assert nothing_done(seen) and seen.naks == 1
            assert seen.pieces == [("nak", 1, int.from_bytes(bytes(nak), "little"))]
        for _ in range(3):   # three bytes lost by the UART
            ctx.set(dut.line_error, 1)
            await ctx.tick()
            ctx.set(dut.line_error, 0)
            await ctx.tick()
        seen = await execute(ctx, _body(12, Command.STATUS, b""))
        assert [p[:2] for p in seen.pieces] == [("ok", 0), ("ticks", 0), ("drops", 0),
                                                ("pending", 0), ("frames", 0), ("naks", 1)]
        assert [p[2] for p in seen.pieces[1:5]] == [77, mesh_drops | output_drops << 32, 1,
                                                    20 | 2 << 16]
        assert seen.pieces[5][2] & 0xFFFF == 6 and seen.pieces[5][2] >> 48 == 3   # line errors
        # STATUS again: executed afresh (its frame counted in its own answer).
        seen = await execute(ctx, _body(12, Command.STATUS, b""))
        assert seen.pieces[4][2] == 21 | 2 << 16
        seen = await execute(ctx, _body(13, Command.RESET, b""))
        assert seen.writes == [(t, region, k, 0)
                               for t, tile in enumerate(info.tiles)
                               for region in (Region.MEMBRANE, Region.ACCUMULATOR)
                               for k in range(tile.neurons)]
        assert queue == [] and seen.pieces == [("ok", 1, 13)]
        seen = await execute(ctx, _body(14, Command.OUTPUTS, (5).to_bytes(2, "little")))
        assert seen.pieces == [("ok", 1, 14)]

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("make, error, match", [
    (lambda: OutputQueue(0), ValueError, r"depth must be .* not 0"),
    (lambda: OutputQueue(True), ValueError, r"not True"),
    (lambda: OutputQueue(4, registered=1), TypeError, r"registered must be a bool, not 1"),
    (lambda: RequestChecker({"cols": 2}), TypeError, r"info must be a ChipInfo, not \{"),
    (lambda: RunEventChecker(None), TypeError, r"info must be a ChipInfo, not None"),
    (lambda: ResponsePath({}), TypeError, r"non-empty dict .* not \{\}"),
    (lambda: ResponsePath({"ok": 0}), ValueError, r"piece 'ok' .* not 0"),
    (lambda: ResponsePath({"a b": 1}), ValueError, r"identifier, not 'a b'"),
    (lambda: CommandExecutor(_info(), None), TypeError, r"bus must be .* not None"),
    (lambda: CommandExecutor("info", None), TypeError, r"info must be a ChipInfo, not 'info'"),
])
def test_link_parts_refuse_bad_parameters(make, error, match):
    with raises_in_constructor(error, match):
        make()
