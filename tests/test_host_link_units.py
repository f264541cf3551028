"""The host link's framing gateware alone, in Amaranth's simulator, against the codec in
firmware/protocol.py: the sender's bytes are exactly ``protocol.frame``'s; the receiver's
verdicts and buffers are exactly what ``SlipDecoder`` + ``parse_body`` make of the same bytes."""

import random

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from spikefab.firmware.protocol import (END, ESC, MAX_FRAME, ProtocolError, SlipDecoder, Status,
                                        frame, parse_body)
from spikefab.hdl.host_link import FrameReceiver, FrameSender
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
        payload = bytes(rng.choice([END, ESC, rng.randrange(256)]) for _ in range(rng.randrange(20)))
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


def test_receiver_matches_codec(base_seed):
    rng = random.Random(base_seed + 1)
    data = _stream(rng)
    want = []
    for body, error in SlipDecoder().feed(data):
        try:
            parse_body(body, error)
            status = Status.OK
        except ProtocolError as exc:
            status = exc.status
        want.append((status, body[:MAX_FRAME]))
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
            await ctx.tick().until(dut.frame.valid)
            length = ctx.get(dut.frame.payload.length)
            status = ctx.get(dut.frame.payload.status)
            body = bytearray()
            for k in range(length):
                ctx.set(dut.read_addr, k)
                await ctx.tick()
                body.append(ctx.get(dut.read_data))
            got.append((Status(status), bytes(body)))
            ctx.set(dut.frame.ready, 1)
            await ctx.tick()
            ctx.set(dut.frame.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(executor)
    sim.run()
    assert [s for s, _ in got] == [s for s, _ in want], f"seed {base_seed + 1}"
    assert got == want, f"seed {base_seed + 1}"
    assert {s for s, _ in want} >= {Status.OK, Status.CRC, Status.SHORT, Status.OVERSIZE,
                                     Status.ESCAPE}


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
