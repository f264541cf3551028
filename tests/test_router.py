"""The router node in Amaranth's simulator: every packet leaves once, by the XY port, in order."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikefab.hdl.abi import pack_event, pack_output, unpack_packet
from spikefab.hdl.router import Port, RouterNode, xy_port

from conftest import raises_in_constructor

AXONS = [[16, 8, 16], [16, 32, 4], [1, 16, 16]]  # axons[y][x] of a 3 x 3 mesh


def expected_port(node, word, arrived):
    """Where XY routing sends ``word``, or None for a drop (also: back where it came from)."""
    kind, x, y, *rest = unpack_packet(word)
    cols, rows = node.mesh
    if kind == "output":
        if node.host_tile is None:
            return None
        out = xy_port(node.position, node.host_tile, Port.HOST)
    elif x >= cols or y >= rows or rest[0] >= node.axons[y][x]:
        return None
    else:
        out = xy_port(node.position, (x, y), Port.LOCAL)
    return None if out == arrived != Port.LOCAL else out


def random_packet(rng, index):
    if rng.random() < 0.2:
        return pack_output(int(rng.integers(0, 3)), int(rng.integers(0, 3)), index % 256,
                           index)
    x, y = int(rng.integers(0, 4)), int(rng.integers(0, 4))  # 3 is outside the mesh
    return pack_event(x, y, int(rng.integers(0, 40)))


@pytest.mark.parametrize("position, host, ready_p, depth", [
    ((1, 1), (1, 1), 1.0, 2), ((1, 1), (1, 1), 0.4, 2), ((0, 0), (2, 1), 0.7, 2),
    ((2, 2), None, 0.6, 2),
    # One place per input.
    ((1, 1), (1, 1), 1.0, 1), ((1, 1), (1, 1), 0.4, 1), ((0, 0), (2, 1), 0.7, 1),
    # No queue at all, as the iCEBreaker chip has.
    ((1, 1), (1, 1), 1.0, 0), ((1, 1), (1, 1), 0.4, 0), ((0, 0), (2, 1), 0.7, 0),
    ((2, 2), None, 0.6, 0),
])
def test_router_delivers_every_packet_once_by_xy(base_seed, position, host, ready_p, depth):
    seed = base_seed + 31 * position[0] + position[1] + int(ready_p * 10) + 1000 * depth
    rng = np.random.default_rng(seed)
    node = RouterNode(x=position[0], y=position[1], cols=3, rows=3, axons=AXONS, host=host,
                      fifo_depth=depth)
    count = 120
    sent = {port: [random_packet(rng, k) for k in range(count)] for port in node.ports}
    received = {port: [] for port in node.ports}
    drops = []
    done = {"inputs": 0}

    def put(port):
        async def testbench(ctx):
            rx = node.port(port).rx
            local = np.random.default_rng(seed + int(port))
            for word in sent[port]:
                while local.random() < 0.3:
                    await ctx.tick()
                ctx.set(rx.payload.as_value(), word)
                ctx.set(rx.valid, 1)
                await ctx.tick().until(rx.ready)
                ctx.set(rx.valid, 0)
            done["inputs"] += 1
        return testbench

    def get(port):
        async def testbench(ctx):
            tx = node.port(port).tx
            local = np.random.default_rng(seed + 100 + int(port))
            while True:
                ready = int(local.random() < ready_p)
                ctx.set(tx.ready, ready)
                *_, valid, word = await ctx.tick().sample(tx.valid, tx.payload.as_value())
                if ready and valid:
                    received[port].append(word)
        return testbench

    async def count_drops(ctx):
        while True:
            *_, dropped = await ctx.tick().sample(node.dropped)
            drops.append(dropped)

    async def main(ctx):
        for _ in range(count * 40):
            await ctx.tick()
            if done["inputs"] == len(node.ports):
                break
        for _ in range(200):  # drain
            await ctx.tick()

    sim = Simulator(node)
    sim.add_clock(1e-6)
    for port in node.ports:
        sim.add_testbench(put(port), background=True)
        sim.add_testbench(get(port), background=True)
    sim.add_testbench(count_drops, background=True)
    sim.add_testbench(main)
    sim.run()

    assert done["inputs"] == len(node.ports), f"seed {seed}: inputs stalled"
    want = {port: [] for port in node.ports}
    want_drops = 0
    for port, words in sent.items():
        for word in words:
            out = expected_port(node, word, port)
            if out is None:
                want_drops += 1
            else:
                want[out].append((port, word))
    assert sum(drops) == want_drops, f"seed {seed}"
    for out in node.ports:
        got = received[out]
        assert sorted(got) == sorted(w for _, w in want[out]), f"seed {seed}: port {out.name}"
        # Packets from one input to one output keep their order.
        for inp in node.ports:
            from_inp = [w for p, w in want[out] if p == inp]
            assert _subsequence(from_inp, got), f"seed {seed}: order {inp.name}->{out.name}"


def _subsequence(needle, haystack):
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


@pytest.mark.parametrize("kwargs, message", [
    (dict(cols=9), r"cols must be an integer in \[1, 8\], not 9"),
    (dict(x=3), r"tile \(3, 1\) is outside the 3 x 3 mesh"),
    (dict(axons=[[1, 2]]), r"axons must be 3 rows of 3 axon counts"),
    (dict(host=(5, 0)), r"host tile \(5, 0\) is outside the 3 x 3 mesh"),
    (dict(fifo_depth=-1), r"fifo_depth must be a non-negative integer, not -1"),
])
def test_router_validation(kwargs, message):
    args = {**dict(x=1, y=1, cols=3, rows=3, axons=AXONS, host=None), **kwargs}
    with raises_in_constructor(ValueError, message):
        RouterNode(**args)
