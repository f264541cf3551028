"""The host link's framing gateware alone, in Amaranth's simulator, against the codec in
firmware/protocol.py: the sender's bytes are exactly ``protocol.frame``'s; the receiver's
verdicts and buffers are exactly what ``SlipDecoder`` + ``parse_body`` make of the same bytes."""

import random

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from spikefab.firmware.protocol import SlipDecoder, frame, parse_body
from spikefab.hdl.abi import END, ESC, MAX_FRAME, Command, CoreShape, ProtocolError, Status
from spikefab.hdl.chip import Chip, TileConfig
from spikefab.hdl.host_link import FrameReceiver, FrameSender
from spikefab.hdl.system import ChipSystem
from spikefab.sim.link_model import LinkModel
from spikefab.sim.link_rtl import CHUNK, ChunkedPort


def test_sender_matches_codec(base_seed):
    rng = random.Random(base_seed)
    responses = []
    for _ in range(30):
        payload = bytes(rng.choice([END, ESC, 0, 0xFF, rng.randrange(256)])
                        for _ in range(rng.randrange(0, 40)))
        responses.append((rng.randrange(256), rng.randrange(256), payload))
    dut = FrameSender()
    got = bytearray()

    async def bench(ctx):
        for seq, code, payload in responses:
            body = bytes([seq, code]) + payload
            for k, byte in enumerate(body):
                ctx.set(dut.response.payload.data, byte)
                ctx.set(dut.response.payload.last, k == len(body) - 1)
                ctx.set(dut.response.valid, 1)
                await ctx.tick().until(dut.response.ready)
                ctx.set(dut.response.valid, 0)
                for _ in range(rng.randrange(3)):
                    await ctx.tick()
        for _ in range(20):
            await ctx.tick()

    async def collect(ctx):
        async for _, _, valid, ready, byte in ctx.tick().sample(
                dut.bytes.valid, dut.bytes.ready, dut.bytes.payload):
            if valid and ready:
                got.append(byte)

    async def backpressure(ctx):
        while True:
            ctx.set(dut.bytes.ready, rng.random() < 0.7)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(collect)
    sim.add_testbench(backpressure, background=True)
    sim.run()
    want = b"".join(frame(s, c, p) for s, c, p in responses)
    assert bytes(got) == want, f"seed {base_seed}"


def _stream(rng):
    """Frames good and bad, as bytes, with what the codec makes of them."""
    data = bytearray()
    for _ in range(25):
        kind = rng.choice(["good", "good", "crc", "short", "oversize", "escape", "garbage"])
        payload = bytes(rng.choice([END, ESC, rng.randrange(256)])
                        for _ in range(rng.randrange(20)))
        wire = bytearray(frame(rng.randrange(256), rng.randrange(256), payload))
        if kind == "crc":
            wire[rng.randrange(1, len(wire) - 1)] ^= 1 << rng.randrange(8)
            if END in wire[1:-1] or ESC in wire[1:-1]:
                continue  # a flip that changed the framing; the good kinds cover framing
        elif kind == "short":
            wire = bytearray([END, rng.randrange(1, 0xC0), END])
        elif kind == "oversize":
            wire = bytearray([END] + [rng.randrange(0xC0) for _ in range(MAX_FRAME + 3)] + [END])
        elif kind == "escape":
            wire = bytearray(wire[:3]) + bytearray([ESC, 0x17]) + wire[3:]
        elif kind == "garbage":
            wire = bytearray(rng.randrange(0xC0) for _ in range(rng.randrange(1, 9))) + wire
        data += wire
    return bytes(data)


def _verdict(body, error):
    """What the receiver must hold for a frame the codec cut: its status and its body."""
    try:
        parse_body(body, error)
        status = Status.OK
    except ProtocolError as exc:
        status = exc.status
    return status, body[:MAX_FRAME]


async def _take_frame(ctx, dut):
    """As the executor does: wait for a held frame, read its buffer, release it; its status
    and body."""
    await ctx.tick().until(dut.frame.valid)
    length = ctx.get(dut.frame.payload.length)
    status = ctx.get(dut.frame.payload.status)
    body = bytearray()
    for k in range(length):
        ctx.set(dut.read_addr, k)
        await ctx.tick()
        body.append(ctx.get(dut.read_data))
    ctx.set(dut.frame.ready, 1)
    await ctx.tick()
    ctx.set(dut.frame.ready, 0)
    return Status(status), bytes(body)


def test_receiver_matches_codec(base_seed):
    rng = random.Random(base_seed + 1)
    data = _stream(rng)
    want = [_verdict(body, error) for body, error in SlipDecoder().feed(data)]
    dut = FrameReceiver()
    got = []

    async def feed(ctx):
        for byte in data:
            ctx.set(dut.bytes.payload, byte)
            ctx.set(dut.bytes.valid, 1)
            await ctx.tick().until(dut.bytes.ready)
        ctx.set(dut.bytes.valid, 0)

    async def executor(ctx):
        while len(got) < len(want):
            got.append(await _take_frame(ctx, dut))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(executor)
    sim.run()
    assert [s for s, _ in got] == [s for s, _ in want], f"seed {base_seed + 1}"
    assert got == want, f"seed {base_seed + 1}"
    assert {s for s, _ in want} >= {Status.OK, Status.CRC, Status.SHORT, Status.OVERSIZE,
                                     Status.ESCAPE}


def test_receiver_drops_a_half_frame_when_the_line_falls_silent(base_seed):
    """The line in pieces (frames cut anywhere, escapes left open), each followed by 0 to 3
    timeout strobes: a frame in progress is dropped at the second strobe with no byte between,
    never while held; what is received otherwise is what the codec makes of the bytes, with
    the same half frames discarded (``SlipDecoder.discard``)."""
    seed = base_seed + 3
    rng = random.Random(seed)
    data = _stream(rng)
    pieces, k = [], 0
    while k < len(data):
        n = rng.choice([1, 2, 5, rng.randrange(1, 60)])
        pieces.append((data[k:k + n], rng.choice([0, 0, 1, 2, 3])))
        k += n
    # The model: the strobes' rule on the codec's decoder.
    decoder, want, drops, quiet = SlipDecoder(), [], 0, False
    for chunk, strobes in pieces:
        want += [_verdict(body, error) for body, error in decoder.feed(chunk)]
        quiet = quiet and not chunk
        for _ in range(strobes):
            if quiet and decoder.pending:
                decoder.discard()
                drops += 1
            quiet = True
    assert drops > 3, f"seed {seed}"
    dut = FrameReceiver()
    got, timed_out = [], []

    async def feed(ctx):
        for chunk, strobes in pieces:
            for byte in chunk:
                ctx.set(dut.bytes.payload, byte)
                ctx.set(dut.bytes.valid, 1)
                await ctx.tick().until(dut.bytes.ready)
            ctx.set(dut.bytes.valid, 0)
            for _ in range(strobes):
                await ctx.tick().until(~dut.frame.valid)   # strobes while held: below
                await ctx.tick().repeat(rng.randrange(1, 4))
                ctx.set(dut.silence, 1)
                await ctx.tick()
                ctx.set(dut.silence, 0)
        await ctx.tick().repeat(MAX_FRAME + 20)

    async def executor(ctx):
        while True:
            got.append(await _take_frame(ctx, dut))

    async def count(ctx):
        async for _, _, pulse in ctx.tick().sample(dut.timed_out):
            if pulse:
                timed_out.append(1)

    async def held_frames_stay(ctx):
        """A strobe pair while a frame is held changes nothing (checked by ``got``)."""
        while True:
            await ctx.tick().until(dut.frame.valid)
            if rng.random() < 0.5:
                for _ in range(2):
                    ctx.set(dut.silence, 1)
                    await ctx.tick()
                    ctx.set(dut.silence, 0)
            await ctx.tick().until(~dut.frame.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(executor, background=True)
    sim.add_testbench(held_frames_stay, background=True)
    sim.add_process(count)
    sim.run()
    assert got == want, f"seed {seed}"
    assert len(timed_out) == drops, f"seed {seed}"


class _Echo(wiring.Component):
    """A stand-in system for ChunkedPort: bytes out as they come in."""
    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))
    busy: Out(1)

    def elaborate(self, platform):
        m = Module()
        wiring.connect(m, wiring.flipped(self.rx), wiring.flipped(self.tx))
        return m


def test_chunked_port_ends_a_chunk_with_every_frame(base_seed):
    """Whatever the alignment, each frame's closing END is the last byte of a chunk, so the
    bench, which waits for whole frames, never waits for a chunk that will not come."""
    rng = random.Random(base_seed + 2)
    frames = [frame(k, 0, bytes(rng.randrange(0xC0) for _ in range(n)))
              for k, n in enumerate([CHUNK - 6, CHUNK - 7, CHUNK - 5, 0, 1, 2 * CHUNK - 6]
                                    + [rng.randrange(3 * CHUNK) for _ in range(20)])]
    data = b"".join(frames)
    dut = ChunkedPort(_Echo())
    chunks = []

    async def feed(ctx):
        for k in range(0, len(data), CHUNK):
            piece = data[k:k + CHUNK]
            ctx.set(dut.rx_data, int.from_bytes(piece, "little"))
            ctx.set(dut.rx_count, len(piece))
            ctx.set(dut.rx_valid, 1)
            await ctx.tick().until(dut.rx_ready)
            ctx.set(dut.rx_valid, 0)

    async def collect(ctx):
        ctx.set(dut.tx_ready, 1)
        while sum(len(c) for c in chunks) < len(data):
            _, _, valid, count, word = await ctx.tick().sample(dut.tx_valid, dut.tx_count,
                                                               dut.tx_data)
            if valid:
                chunks.append(word.to_bytes(CHUNK, "little")[:count])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(collect)
    sim.run()
    assert b"".join(chunks) == data, f"seed {base_seed + 2}"
    ends, position = set(), 0
    for c in chunks:
        position += len(c)
        ends.add(position)
    position = 0
    for f in frames:
        position += len(f)
        assert position in ends, f"a frame ended inside a chunk (seed {base_seed + 2})"


def test_wide_memory_words_round_trip_through_the_link(base_seed):
    """Words wider than the 12-byte header (16 lanes of 8 bits, as on the ULX3S): every
    region of every tile written, read and filled through the whole ChipSystem in Amaranth's
    simulator, each answer equal to LinkModel's. (The link once looped forever gathering a
    16-byte word: its byte counter stopped at 12.)"""
    seed, lanes = base_seed + 16, 16
    rng = random.Random(seed)
    tiles = {(0, 0): TileConfig(CoreShape(24, 16, w_bits=8, v_bits=12), lanes=lanes,
                                destinations=16, register_reads=True),
             (1, 0): TileConfig(CoreShape(8, 5, w_bits=4, v_bits=16), lanes=8,
                                destinations=8, register_reads=True)}
    dut = ChipSystem(Chip(cols=2, rows=1, tiles=tiles, clocking="single"), output_depth=8)
    model = LinkModel(dut.info)
    info = model.info
    wb = info.word_bytes
    assert wb == lanes

    def address(t, region, offset):
        return bytes([t, region]) + offset.to_bytes(4, "little")

    requests = [frame(1, Command.INFO)]
    for t, tile in enumerate(info.tiles):
        for region, size in enumerate(tile.regions):
            offset = rng.randrange(size)
            count = rng.randint(1, min(3, size - offset))
            words = bytes(rng.getrandbits(8) for _ in range(count * wb))
            requests += [frame(len(requests) + 1, Command.WRITE,
                               address(t, region, offset) + words),
                         frame(len(requests) + 2, Command.READ, address(t, region, offset)
                               + count.to_bytes(2, "little")),
                         frame(len(requests) + 3, Command.FILL, address(t, region, offset)
                               + count.to_bytes(4, "little") + words[:wb]),
                         frame(len(requests) + 4, Command.READ, address(t, region, offset)
                               + count.to_bytes(2, "little"))]
    requests.append(frame(len(requests) + 1, Command.RUN, bytes(2)))
    got = bytearray()

    async def collect(ctx):
        ctx.set(dut.tx.ready, 1)
        async for _, _, valid, byte in ctx.tick().sample(dut.tx.valid, dut.tx.payload):
            if valid:
                got.append(byte)

    async def bench(ctx):
        for request in requests:
            want = model.receive(request)
            got.clear()
            for byte in request:
                ctx.set(dut.rx.payload, byte)
                ctx.set(dut.rx.valid, 1)
                await ctx.tick().until(dut.rx.ready)
            ctx.set(dut.rx.valid, 0)
            for _ in range(4000):
                if len(got) >= len(want):
                    break
                await ctx.tick()
            await ctx.tick().repeat(4)
            assert bytes(got) == want, (f"seed {seed}: request {request.hex()} answered "
                                        f"{bytes(got).hex()}, want {want.hex()}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(collect)
    sim.run()
