"""The chip's parts alone in Amaranth's simulator, each against a model: the tick controller
(``hdl/tick.py``), the chip bus (``hdl/chip_bus.py``) and a tile (``hdl/chip_tile.py``)."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from spikefab.hdl.abi import (COUNTERS, REGISTERS, TICK_BITS, Clocking, CoreMemoryMap, CoreShape,
                              Region, Register, RouteDest, RouteEntry, pack, pack_event,
                              pack_output, route_dest, unpack)
from spikefab.hdl.chip import Chip, TileConfig, chip_request_layout
from spikefab.hdl.chip_bus import TABLE_PORTS, ChipBus, TileBusSignature
from spikefab.hdl.chip_tile import ChipTile
from spikefab.hdl.core import LIFCore
from spikefab.hdl.lif import LIFDatapath
from spikefab.hdl.tick import TickController
from spikefab.hdl.tile import RouteExpander
from spikefab.sim.golden import CoreModel, NeuronConfig


def _bits(values) -> int:
    return sum(int(v) << i for i, v in enumerate(values))


def test_tick_controller_waits_for_a_packet_in_flight_and_every_done():
    """Idle, a tick starts at once; the next waits for both cores' DONE and for the packet
    injected meanwhile to leave the mesh, then two cycles more (the leaving is registered,
    then counted)."""
    dut = TickController(tiles=2, routers=1, places=8)
    sim = Simulator(dut)
    sim.add_clock(10e-9)

    async def testbench(ctx):
        ctx.set(dut.tick.valid, 1)
        *_, quiet, ready, send = await ctx.tick().sample(dut.quiet, dut.tick.ready,
                                                          dut.send_tick)
        assert quiet and ready and send
        ctx.set(dut.tick.valid, 0)
        ctx.set(dut.injected, 1)
        await ctx.tick()
        ctx.set(dut.injected, 0)
        for core in (0b01, 0b10):
            *_, quiet = await ctx.tick().sample(dut.quiet)
            assert not quiet               # a core's update is pending
            ctx.set(dut.done, core)
        await ctx.tick()
        ctx.set(dut.done, 0)
        ctx.set(dut.tick.valid, 1)
        for _ in range(5):
            *_, quiet, ready = await ctx.tick().sample(dut.quiet, dut.tick.ready)
            assert not quiet and not ready   # the packet is still in flight
        ctx.set(dut.arrived, 0b01)
        waited = 0
        while True:
            *_, ready, send = await ctx.tick().sample(dut.tick.ready, dut.send_tick)
            ctx.set(dut.arrived, 0)
            assert ready == send
            if ready:
                break
            waited += 1
        assert waited == 2, waited
        *_, ticks, stamp = await ctx.tick().sample(dut.ticks, dut.stamp)
        assert (ticks, stamp) == (2, 0)   # the stamp follows the count a cycle later
        *_, stamp = await ctx.tick().sample(dut.stamp)
        assert stamp == 1

    sim.add_testbench(testbench)
    sim.run()


def test_tick_controller_is_the_barrier(base_seed):
    """Random packets into and out of the mesh (never more out than in), DONEs, owed markers
    and tick requests, against a cycle-by-cycle model of the barrier: ``quiet`` only with no
    update pending, no marker owed, nothing in flight and no handshake registered but not yet
    counted; the tick completes, with ``send_tick``, exactly when requested while quiet;
    every core is then pending until its DONE; ``ticks``, ``mesh_drops`` and ``stamp``
    count."""
    seed = base_seed + 43
    rng = np.random.default_rng(seed)
    tiles, routers, places = 3, 3, 40
    dut = TickController(tiles=tiles, routers=routers, places=places)
    sim = Simulator(dut)
    sim.add_clock(10e-9)
    seen = {"ticks": 0, "quiet": 0, "held": 0}

    async def testbench(ctx):
        mesh = 0                      # packets in the mesh as the handshakes say
        in_flight, produced_q, consumed_q = 0, [0] * (1 + tiles), [0] * (2 + tiles)
        pending = ticks = drops = stamp = 0
        for cycle in range(5000):
            produced = [int(rng.random() < 0.12) for _ in range(1 + tiles)]
            if mesh + sum(produced) > places:
                produced = [0] * (1 + tiles)
            # Leaving: to the host, dropped (several at once), into each tile's queue.
            consumed = [int(rng.random() < 0.15),
                        int(rng.integers(1, 4)) if rng.random() < 0.05 else 0,
                        *(int(rng.random() < 0.15) for _ in range(tiles))]
            if sum(consumed) > mesh:
                consumed = [0] * (2 + tiles)
            mesh += sum(produced) - sum(consumed)
            done = int(rng.integers(0, 1 << tiles)) if rng.random() < 0.25 else 0
            owed = int(rng.integers(1, 1 << tiles)) if rng.random() < 0.05 else 0
            valid = int(rng.random() < 0.4)
            ctx.set(dut.injected, produced[0])
            ctx.set(dut.expanded, _bits(produced[1:]))
            ctx.set(dut.to_host, consumed[0])
            ctx.set(dut.dropped, consumed[1])
            ctx.set(dut.arrived, _bits(consumed[2:]))
            ctx.set(dut.done, done)
            ctx.set(dut.owed, owed)
            ctx.set(dut.tick.valid, valid)
            quiet = (pending == 0 and owed == 0 and in_flight == 0
                     and not any(produced_q + consumed_q))
            start = bool(valid and quiet)
            _, _, *got = await ctx.tick().sample(dut.quiet, dut.tick.ready, dut.send_tick,
                                                 dut.ticks, dut.mesh_drops, dut.stamp)
            want = [quiet, start, start, ticks, drops, stamp]
            assert got == want, (f"seed {seed} cycle {cycle}: quiet, ready, send_tick, ticks, "
                                 f"mesh_drops, stamp are {got}, not {want}")
            seen["ticks"] += start
            seen["quiet"] += quiet
            seen["held"] += valid and not quiet
            in_flight += sum(produced_q) - sum(consumed_q)
            drops += consumed_q[1]
            produced_q, consumed_q = produced, consumed
            stamp = (ticks - 1) % (1 << TICK_BITS)
            ticks += start
            pending = (1 << tiles) - 1 if start else pending & ~done
            assert 0 <= in_flight <= places

    sim.add_testbench(testbench)
    sim.run()
    assert seen["ticks"] > 50 and seen["quiet"] > 200 and seen["held"] > 500, seen


def _fake_answer(k: int, region: int, offset: int, bits: int) -> int:
    """What the testbench's core ``k`` answers to a read (any word, different per address)."""
    return ((k * 7919 + region * 104_729 + offset * 31 + 1) * 2_654_435_761) % (1 << bits)


@pytest.mark.parametrize("register_answers", [False, True], ids=["direct", "registered"])
def test_chip_bus_dispatches_each_request_to_its_tile(base_seed, register_answers):
    """The chip bus alone, real route expanders on its table ports, the testbench as every
    tile's core (random ready, answer delays and ``drained``) and as the host (random
    backpressure on answers): random requests, in and out of range, for tiles that exist and
    tiles that do not. Each is carried out once, on its tile only -- a route entry in its
    table, anything else on the core with the request's fields, never before the tile's
    ingress queue is drained -- or ignored; reads answer the entry, the core's word, or 0."""
    seed = base_seed + 47
    rng = np.random.default_rng([seed, int(register_answers)])
    tiles = {(0, 0): TileConfig(CoreShape(8, 4), lanes=4, destinations=16),
             (1, 0): TileConfig(CoreShape(4, 3), lanes=2, destinations=12)}
    configs = list(tiles.values())
    layout = chip_request_layout(tiles)
    offset_bits = layout["offset"].shape.width
    data_bits = layout["data"].shape.width
    maps = [CoreMemoryMap(c.shape, c.lanes) for c in configs]
    expanders = [RouteExpander(x=x, y=y, neurons=c.shape.neurons, destinations=c.destinations)
                 for (x, y), c in tiles.items()]
    dut = ChipBus(layout, [TileBusSignature(mm, e) for mm, e in zip(maps, expanders)],
                  register_answers=register_answers)
    top = Module()
    top.submodules.bus = dut
    for k, expander in enumerate(expanders):
        top.submodules[f"expander_{k}"] = expander
        for name in TABLE_PORTS:
            wiring.connect(top, getattr(dut.tile(k), name), getattr(expander, name))
    tables = [{Region.ROUTE_INDEX: [0] * c.shape.neurons, Region.ROUTE_DEST: [0] * c.destinations}
              for c in configs]
    widths = {Region.ROUTE_INDEX: RouteEntry.size, Region.ROUTE_DEST: RouteDest.size}
    received = [[] for _ in configs]     # what each core was asked, in order
    expected = [[] for _ in configs]
    state = {"core": None, "finished": False, "stalled": 0}
    sim = Simulator(top)
    sim.add_clock(10e-9)

    def core(k):
        port, mm = dut.tile(k).core, maps[k]

        async def run(ctx):
            answers, offered = [], False
            while not state["finished"]:
                ready = int(rng.random() < 0.6)
                drained = int(rng.random() < 0.7)
                ctx.set(port.req.ready, ready)
                ctx.set(dut.tile(k).drained, drained)
                if answers and not offered and rng.random() < 0.5:
                    ctx.set(port.resp.payload, answers[0])
                    ctx.set(port.resp.valid, 1)
                    offered = True
                *_, valid, word, resp_ready = await ctx.tick().sample(
                    port.req.valid, port.req.payload.as_value(), port.resp.ready)
                if valid:
                    assert state["core"] == k, f"seed {seed}: core {k} offered another's request"
                    assert drained, f"seed {seed}: core {k} offered a request before drained"
                if valid and not ready:
                    state["stalled"] += 1
                if valid and ready:
                    layout = mm.request_layout
                    addr, write, data = (
                        word >> layout[name].offset & ((1 << layout[name].width) - 1)
                        for name in ("addr", "write", "data"))
                    request = (addr >> mm.offset_bits, addr & ((1 << mm.offset_bits) - 1),
                               write, data)
                    received[k].append(request)
                    if not request[2]:
                        answers.append(_fake_answer(k, *request[:2], mm.data_bits))
                if offered and resp_ready:
                    answers.pop(0)
                    offered = False
                    ctx.set(port.resp.valid, 0)
        return run

    async def host(ctx):
        bus = dut.bus
        for _ in range(400):
            k = int(rng.integers(0, len(configs) + 1)) if rng.random() < 0.95 else 63
            region = int(rng.choice([Region.ROUTE_INDEX, Region.ROUTE_DEST, Region.SYNAPSE,
                                     Region.MEMBRANE, Region.BIAS, Region.REGISTER,
                                     Region.ACCUMULATOR, 7]))   # 7: a region nothing has
            if rng.random() < 0.1:
                offset = int(rng.integers(0, 1 << offset_bits))
            elif k < len(configs) and rng.random() < 0.4:   # at an edge: a table's, the core's
                size = len(tables[k][region]) if region in widths else 1 << maps[k].offset_bits
                offset = int(rng.choice([0, size - 1, size, size + 1,
                                         1 << (size - 1).bit_length()]))
            else:
                offset = int(rng.integers(0, 20))
            write = bool(rng.random() < 0.5)
            data = int(rng.integers(0, 1 << data_bits, dtype=np.uint64))
            want = 0
            if k < len(configs) and region in widths:
                table = tables[k][region]
                if offset < len(table):
                    if write:
                        table[offset] = data & ((1 << widths[region]) - 1)
                    want = table[offset]
                target = None
            elif k < len(configs) and offset >> maps[k].offset_bits == 0:
                mm = maps[k]
                expected[k].append((region, offset, int(write),
                                    data & ((1 << mm.data_bits) - 1)))
                want = _fake_answer(k, region, offset, mm.data_bits)
                target = k
            else:
                target = None
            while not ctx.get(bus.req.ready):   # the last request is carried out
                await ctx.tick()
            await ctx.tick()   # and the cores have seen the cycle it was
            state["core"] = target
            ctx.set(bus.req.payload.as_value(), pack(layout, tile=k, region=region,
                                                     offset=offset, write=int(write),
                                                     data=data))
            ctx.set(bus.req.valid, 1)
            await ctx.tick().until(bus.req.ready)
            ctx.set(bus.req.valid, 0)
            if write:
                continue
            for _ in range(1000):
                ready = int(rng.random() < 0.6)
                ctx.set(bus.resp.ready, ready)
                *_, valid, got = await ctx.tick().sample(bus.resp.valid, bus.resp.payload)
                if valid and ready:
                    break
            else:
                pytest.fail(f"seed {seed}: no answer to a read")
            ctx.set(bus.resp.ready, 0)
            assert got == want, (f"seed {seed}: tile {k} region {region} offset {offset} "
                                 f"read {got:#x}, not {want:#x}")
        # Every table entry reads back as written (no request reached another tile's table).
        ctx.set(bus.resp.ready, 1)
        for k, config in enumerate(configs):
            for region, table in tables[k].items():
                for offset, want in enumerate(table):
                    while not ctx.get(bus.req.ready):
                        await ctx.tick()
                    ctx.set(bus.req.payload.as_value(), pack(layout, tile=k, region=region,
                                                             offset=offset, write=0))
                    ctx.set(bus.req.valid, 1)
                    await ctx.tick().until(bus.req.ready)
                    ctx.set(bus.req.valid, 0)
                    got, = await ctx.tick().sample(bus.resp.payload).until(bus.resp.valid)
                    assert got == want, f"seed {seed}: tile {k} {region!r} entry {offset}"
        state["finished"] = True

    sim.add_testbench(host)
    for k in range(len(configs)):
        sim.add_testbench(core(k), background=True)
    sim.run()
    assert received == expected, f"seed {seed}: the cores were asked {received}"
    assert all(len(r) > 20 for r in received) and state["stalled"] > 20, (
        [len(r) for r in received], state)


def _tile_program(rng, shape: CoreShape, destinations: int):
    """A random core (weights, biases, parameters) and route tables for one tile."""
    weights = rng.integers(-20, 41, size=(shape.axons, shape.neurons))
    bias = rng.integers(-5, 16, size=shape.neurons)
    config = NeuronConfig(int(rng.integers(20, 61)), int(rng.integers(0, 3)),
                          int(rng.integers(0, 2)))
    dests = [route_dest(int(rng.integers(0, 8)), int(rng.integers(0, 8)),
                        int(rng.integers(0, 1024))) for _ in range(destinations)]
    index = []
    for _ in range(shape.neurons):
        count = int(rng.integers(0, 4))
        index.append(pack(RouteEntry, start=int(rng.integers(0, destinations - count + 1)),
                          count=count, to_host=int(rng.random() < 0.6)))
    return weights, bias, config, index, dests


@pytest.mark.parametrize("clocking, core_period, register_reads", [
    (Clocking.GALS, 17e-9, False),
    (Clocking.GALS, 3.4e-9, False),
    (Clocking.SINGLE, None, False),
    (Clocking.SINGLE, None, True),
], ids=["gals-slow-core", "gals-fast-core", "single", "single-registered-reads"])
def test_chip_tile_plays_events_ticks_and_bus(base_seed, clocking, core_period, register_reads):
    """One tile alone, the testbench as its router, tick controller and chip bus: a random core
    and route tables loaded through ``bus``, random events (some for axons the core does not
    have) through ``events``, a tick after each tick's events. The packets of each update are
    the golden model's spikes routed by the tables, stamped with the tick, and ``done`` comes
    once per update, after its last packet; no event is taken while the marker is owed;
    ``arrived`` counts the events taken; ``drained`` falls while events wait; the membranes and
    counters read back over ``bus`` equal the model's."""
    seed = base_seed + 53
    rng = np.random.default_rng([seed, int(core_period or 0), int(register_reads)])
    x, y = 1, 2
    shape, destinations, lanes = CoreShape(6, 5), 10, 2
    domain = Chip.domain((x, y)) if clocking == Clocking.GALS else "sync"
    core = LIFCore(shape, lanes=lanes, register_reads=register_reads,
                   spike_fifo_depth=0 if clocking == Clocking.SINGLE else
                   LIFDatapath.LATENCY + int(register_reads) + 1)
    dut = ChipTile(x=x, y=y, core=core, destinations=destinations, domain=domain,
                   clocking=clocking, registered_reads=register_reads)
    mm = core.memory_map
    weights, bias, config, index, dests = _tile_program(rng, shape, destinations)
    model = CoreModel(shape, weights, config, bias)
    ticks = 8
    events = [[int(rng.integers(0, shape.axons + 2)) for _ in range(int(rng.integers(0, 6)))]
              for _ in range(ticks)]
    expected = []
    for tick, axons in enumerate(events):
        model.deliver(axons)
        packets = []
        for n in np.flatnonzero(model.update()[0]):
            entry = unpack(RouteEntry, index[n])
            for d in range(entry["start"], entry["start"] + entry["count"]):
                dest = unpack(RouteDest, dests[d])
                packets.append(pack_event(dest["x"], dest["y"], dest["axon"]))
            if entry["to_host"]:
                packets.append(pack_output(x, y, int(n), tick))
        expected.append(packets)
    got = [[] for _ in range(ticks)]
    seen = {"done": 0, "taken": 0, "arrived": 0, "undrained": 0}
    sim = Simulator(dut)
    sim.add_clock(10e-9, domain="sync")
    if clocking == Clocking.GALS:
        sim.add_clock(core_period, domain=domain)

    async def core_request(ctx, region, offset, *, write, value=0):
        """As the chip bus does: after the ingress queue has drained, held until taken."""
        req, resp = dut.bus.core.req, dut.bus.core.resp
        while not ctx.get(dut.bus.drained):
            await ctx.tick()
        ctx.set(req.payload.as_value(), mm.request(mm.addr(region, offset), write=write,
                                                   data=mm.to_word(value)))
        ctx.set(req.valid, 1)
        await ctx.tick().until(req.ready)
        ctx.set(req.valid, 0)
        if write:
            return None
        ctx.set(resp.ready, 1)
        word, = await ctx.tick().sample(resp.payload).until(resp.valid)
        ctx.set(resp.ready, 0)
        return word

    async def table_write(ctx, port, addr, word):
        ctx.set(port.addr, addr)
        ctx.set(port.data.as_value(), word)
        ctx.set(port.en, 1)
        await ctx.tick()
        ctx.set(port.en, 0)

    async def main(ctx):
        await ctx.tick().repeat(4)
        for offset, word in enumerate(mm.synapse_region(weights)):
            await core_request(ctx, Region.SYNAPSE, offset, write=True, value=word)
        for n in range(shape.neurons):
            await core_request(ctx, Region.BIAS, n, write=True, value=int(bias[n]))
        for register, value in config.registers().items():
            await core_request(ctx, Region.REGISTER, register, write=True, value=value)
        for n, word in enumerate(index):
            await table_write(ctx, dut.bus.index_write, n, word)
        for d, word in enumerate(dests):
            await table_write(ctx, dut.bus.dest_write, d, word)
        for tick, axons in enumerate(events):
            for axon in axons:
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.events.payload.as_value(), pack_event(x, y, axon))
                ctx.set(dut.events.valid, 1)
                await ctx.tick().until(dut.events.ready)
                ctx.set(dut.events.valid, 0)
            for _ in range(100_000):   # the barrier: the last update is done
                if seen["done"] == tick:
                    break
                await ctx.tick()
            else:
                pytest.fail(f"seed {seed}: update {tick - 1} never finished")
            ctx.set(dut.stamp, tick)
            ctx.set(dut.tick, 1)
            await ctx.tick()
            ctx.set(dut.tick, 0)
        while seen["done"] < ticks:
            await ctx.tick()
        v = [mm.to_signed(await core_request(ctx, Region.MEMBRANE, n, write=False))
             for n in range(shape.neurons)]
        assert v == [int(a) for a in model.v[0]], f"seed {seed}: membranes {v}"
        for register in COUNTERS:
            name = REGISTERS[register].name
            value = await core_request(ctx, Region.REGISTER, register, write=False)
            assert value == getattr(model.counters, name), f"seed {seed}: counter {name}"
        threshold = await core_request(ctx, Region.REGISTER, Register.THRESHOLD, write=False)
        assert threshold == config.threshold

    async def monitor(ctx):
        while True:
            ready = int(rng.random() < 0.6)
            ctx.set(dut.packets.ready, ready)
            *_, valid, packet, done, owed, e_valid, e_ready, arrived, drained = \
                await ctx.tick().sample(dut.packets.valid, dut.packets.payload.as_value(),
                                        dut.done, dut.owed, dut.events.valid,
                                        dut.events.ready, dut.arrived, dut.bus.drained)
            if valid and ready:
                assert seen["done"] < ticks, f"seed {seed}: a packet after the last update"
                got[seen["done"]].append(packet)
            taken = bool(e_valid and e_ready)
            assert not (taken and owed), f"seed {seed}: an event taken while a marker is owed"
            assert arrived == taken
            seen["taken"] += taken
            seen["arrived"] += arrived
            seen["undrained"] += not drained
            seen["done"] += done

    sim.add_testbench(main)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert got == expected, f"seed {seed}: packets per update {got}, not {expected}"
    assert seen["taken"] == sum(map(len, events)) == seen["arrived"]
    assert seen["undrained"] > 0 and sum(map(len, expected)) > 10, (seen, expected)
