"""The chip top in Amaranth's simulator (small, fast), its constructor checks, and the route
tables over the chip bus. The chip's parts alone: ``test_chip_parts.py``."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from spikefab.hdl.abi import (COUNTERS, REGISTERS, CoreMemoryMap, CoreShape, Region, RouteDest,
                              RouteEntry, pack, pack_event, pack_output, route_dest, unpack,
                              unpack_packet)
from spikefab.hdl.chip import Chip, TileConfig
from spikefab.hdl.tile import EgressKind, RouteExpander
from spikefab.sim.chip_rtl import (ChipLayout, ChipResult, ChipScenario, compare_chip,
                                   expected_chip, random_chip_program, random_host_events,
                                   tile_configs)
from spikefab.sim.golden import NeuronConfig

from conftest import raises_in_constructor


TILES = {(0, 0): TileConfig(CoreShape(8, 4), lanes=4),
         (1, 0): TileConfig(CoreShape(4, 3), lanes=2)}


def test_ticks_pass_the_barrier_with_unequal_clocks():
    """Host events, then tick; the controller only starts the next tick once the cores, each
    on its own clock, have reported DONE and nothing is in flight."""
    chip = Chip(cols=2, rows=1, tiles=TILES, host=(1, 0))
    sim = Simulator(chip)
    sim.add_clock(10e-9, domain="sync")
    sim.add_clock(17e-9, domain="core_0_0")
    sim.add_clock(3.4e-9, domain="core_1_0")
    waits = []

    async def testbench(ctx):
        for _ in range(4):
            await ctx.tick()
        for tick in range(3):
            for event in [(0, 0, 1), (1, 0, 2), (0, 0, 7), (5, 0, 0), (1, 0, 9)]:
                ctx.set(chip.host_in.payload.as_value(), pack_event(*event))
                ctx.set(chip.host_in.valid, 1)
                await ctx.tick().until(chip.host_in.ready)
                ctx.set(chip.host_in.valid, 0)
            ctx.set(chip.tick.valid, 1)
            cycles = 0
            while True:
                *_, ready = await ctx.tick().sample(chip.tick.ready)
                cycles += 1
                assert cycles < 1000, "deadlock"
                if ready:
                    break
            ctx.set(chip.tick.valid, 0)
            waits.append(cycles)
        await ctx.tick().until(chip.quiet)
        assert ctx.get(chip.ticks) == 3
        assert ctx.get(chip.mesh_drops) == 3 * 2  # (5, 0) is off the mesh; axon 9 >= 4

    sim.add_testbench(testbench)
    sim.run()
    # The first tick waits only for its events to arrive; the others also for the previous
    # update, on the slower core's clock.
    assert waits[0] < min(waits[1:]), waits


@pytest.mark.parametrize("kwargs, message", [
    (dict(cols=9), r"the mesh must be between 1 x 1 and 8 x 8, not 9 x 1"),
    (dict(tiles={(0, 0): TILES[0, 0]}), r"tiles must configure exactly the tiles"),
    (dict(host=(2, 0)), r"host tile \(2, 0\) is outside the mesh"),
])
def test_chip_validation(kwargs, message):
    args = {**dict(cols=2, rows=1, tiles=TILES), **kwargs}
    with raises_in_constructor(ValueError, message):
        Chip(**args)


# ---- route tables over the chip bus ----

class BusDriver:
    """The chip bus from a testbench: one request at a time, a read returns its response."""

    def __init__(self, chip):
        self.chip = chip
        self.layout = chip.request_layout
        self.latency = None  # mesh cycles from a read's request taken to its response

    async def __call__(self, ctx, tile, region, offset, *, write, data=0):
        bus = self.chip.bus
        ctx.set(bus.req.payload.as_value(), pack(
            self.layout, tile=tile, region=region, offset=offset, write=int(write), data=data))
        ctx.set(bus.req.valid, 1)
        await ctx.tick().until(bus.req.ready)
        ctx.set(bus.req.valid, 0)
        if write:
            return None
        ctx.set(bus.resp.ready, 1)
        cycles = 0
        while True:
            *_, valid, payload = await ctx.tick().sample(bus.resp.valid, bus.resp.payload)
            cycles += 1
            assert cycles < 10_000, "no response to a bus read"
            if valid:
                break
        ctx.set(bus.resp.ready, 0)
        self.latency = cycles
        return payload


def _random_tables(rng, tiles):
    """Random full-width words for every entry of both tables of every tile."""
    return {k: {Region.ROUTE_INDEX: [int(rng.integers(0, 1 << RouteEntry.size))
                                    for _ in range(config.shape.neurons)],
                Region.ROUTE_DEST: [int(rng.integers(0, 1 << RouteDest.size))
                                   for _ in range(config.destinations)]}
            for k, config in enumerate(tiles.values())}


@pytest.mark.parametrize("lut_ram", [False, True])
def test_route_tables_read_back(base_seed, lut_ram):
    """Random route entries and destinations written to both tiles read back as written;
    entries past a table's end, and tiles or regions that do not exist, read 0, and writes there
    change nothing (no wrap onto a real entry). With LUT RAM the tile registers the bus's
    requests first: a read takes a cycle more."""
    seed = base_seed + 31
    rng = np.random.default_rng(seed)
    tiles = {(0, 0): TileConfig(CoreShape(8, 4), lanes=4, destinations=16, lut_ram=lut_ram),
             (1, 0): TileConfig(CoreShape(4, 3), lanes=2, destinations=12, lut_ram=lut_ram)}
    chip = Chip(cols=2, rows=1, tiles=tiles, host=(1, 0))
    tables = _random_tables(rng, tiles)
    addr_bits = chip.request_layout["offset"].shape.width
    data_bits = chip.request_layout["data"].shape.width
    sim = Simulator(chip)
    sim.add_clock(10e-9, domain="sync")
    sim.add_clock(17e-9, domain="core_0_0")
    sim.add_clock(7e-9, domain="core_1_0")

    async def testbench(ctx):
        bus = BusDriver(chip)
        for _ in range(4):
            await ctx.tick()
        writes = [(k, space, addr) for k in tables for space in tables[k]
                  for addr in range(len(tables[k][space]))]
        for k, space, addr in (writes[i] for i in rng.permutation(len(writes))):
            await bus(ctx, k, space, addr, write=True, data=tables[k][space][addr])
        # Out of range: every address past each table's end that wraps onto a real entry,
        # the top address, and a nonexistent tile and region, written with all ones.
        outside = []
        for k, config in enumerate(tiles.values()):
            for space, size in ((Region.ROUTE_INDEX, config.shape.neurons),
                                (Region.ROUTE_DEST, config.destinations)):
                depth = 1 << max(size - 1, 1).bit_length()
                outside += [(k, space, a) for a in (size, depth, depth + 1, 2 * depth - 1,
                                                    (1 << addr_bits) - 1)]
            outside.append((k, 7, 0))    # a region no tile has: the core ignores it
        outside += [(2, Region.ROUTE_INDEX, 0), (63, Region.ROUTE_DEST, 1)]
        for k, space, addr in outside:
            await bus(ctx, k, space, addr, write=True, data=(1 << data_bits) - 1)
        for k, space, addr in outside:
            got = await bus(ctx, k, space, addr, write=False)
            assert got == 0, (f"seed {seed}: tile {k} space {space} entry {addr} (out of "
                              f"range) read {got:#x}, not 0")
        reads = [writes[i] for i in rng.permutation(len(writes))]
        for k, space, addr in reads:
            got = await bus(ctx, k, space, addr, write=False)
            want = tables[k][space][addr]
            assert got == want, (f"seed {seed}: tile {k} {Region(space).name} entry {addr} read "
                                 f"{got:#x}, wrote {want:#x}")
            # On an idle chip the port is free at once: taken, dispatch, (with LUT RAM, the
            # request registered in the tile,) port read, its data registered, acknowledged.
            assert bus.latency == 5 + lut_ram, \
                f"seed {seed}: a route read took {bus.latency} cycles"

    sim.add_testbench(testbench)
    sim.run()


def _expander_packets(tables, spikes, position):
    """What a RouteExpander must send for a spike stream, in order."""
    index, dests = tables
    packets, tick = [], 0
    for kind, neuron in spikes:
        if kind == EgressKind.DONE:
            tick += 1
            continue
        entry = unpack(RouteEntry, index[neuron])
        for d in range(entry["start"], entry["start"] + entry["count"]):
            dest = unpack(RouteDest, dests[d])
            packets.append(pack_event(dest["x"], dest["y"], dest["axon"]))
        if entry["to_host"]:
            packets.append(pack_output(*position, neuron, tick))
    return packets


@pytest.mark.parametrize("reads", [False, True], ids=["no-reads", "reads"])
def test_route_expander_reads_share_its_ports(base_seed, reads):
    """Table reads on the expander's own read ports, as often as possible, while it expands a
    random spike stream under random backpressure: every read returns the entry, and the
    packets are exactly those without reads, in the same order."""
    seed = base_seed + 37
    rng = np.random.default_rng(seed)  # the same tables and spikes with and without reads
    neurons, destinations, position = 8, 24, (1, 2)
    dut = RouteExpander(x=position[0], y=position[1], neurons=neurons,
                        destinations=destinations)
    dests = [int(rng.integers(0, 1 << RouteDest.size)) for _ in range(destinations)]
    index = []
    for _ in range(neurons):
        count = int(rng.integers(0, 4))
        start = int(rng.integers(0, destinations - count + 1))
        index.append(pack(RouteEntry, start=start, count=count,
                             to_host=int(rng.random() < 0.5)))
    spikes = [(EgressKind.DONE, 0) if rng.random() < 0.15
              else (EgressKind.SPIKE, int(rng.integers(0, neurons))) for _ in range(120)]
    want = _expander_packets((index, dests), spikes, position)
    rng = np.random.default_rng([seed, int(reads)])  # timing: gaps, backpressure, reads
    got = []
    state = {"loaded": False, "finished": False, "busy_reads": 0, "reads": 0}
    sim = Simulator(dut)
    sim.add_clock(10e-9)

    async def load_and_feed(ctx):
        for addr, word in enumerate(index):
            ctx.set(dut.index_write.addr, addr)
            ctx.set(dut.index_write.data.as_value(), word)
            ctx.set(dut.index_write.en, 1)
            await ctx.tick()
        ctx.set(dut.index_write.en, 0)
        for addr, word in enumerate(dests):
            ctx.set(dut.dest_write.addr, addr)
            ctx.set(dut.dest_write.data.as_value(), word)
            ctx.set(dut.dest_write.en, 1)
            await ctx.tick()
        ctx.set(dut.dest_write.en, 0)
        state["loaded"] = True
        for kind, neuron in spikes:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.spikes.payload.kind, kind)
            ctx.set(dut.spikes.payload.neuron, neuron)
            ctx.set(dut.spikes.valid, 1)
            await ctx.tick().until(dut.spikes.ready)
            ctx.set(dut.spikes.valid, 0)
        for _ in range(10_000):
            if len(got) >= len(want):
                break
            await ctx.tick()
        for _ in range(20):  # nothing more comes
            await ctx.tick()
        state["finished"] = True

    async def stamp(ctx):
        """The tick input as a chip drives it: one more after each DONE is taken."""
        done = 0
        while True:
            ctx.set(dut.tick, done % (1 << 16))
            *_, valid, ready, kind = await ctx.tick().sample(
                dut.spikes.valid, dut.spikes.ready, dut.spikes.payload.kind)
            done += bool(valid and ready and kind == EgressKind.DONE)

    async def collect(ctx):
        while True:
            ready = int(rng.random() < 0.6)
            ctx.set(dut.packets.ready, ready)
            *_, valid, payload = await ctx.tick().sample(dut.packets.valid,
                                                          dut.packets.payload.as_value())
            if valid and ready:
                got.append(payload)

    def reader(port, table, name):
        async def read(ctx):
            while not state["loaded"]:
                await ctx.tick()
            while not state["finished"]:
                addr = int(rng.integers(0, len(table)))
                ctx.set(port.addr, addr)
                ctx.set(port.en, 1)
                waited, busy = 0, False
                while True:
                    *_, ack, data, out_valid, in_valid = await ctx.tick().sample(
                        port.ack, port.data.as_value(), dut.packets.valid, dut.spikes.valid)
                    busy |= bool(out_valid or in_valid)
                    waited += 1
                    assert waited < 1000, f"seed {seed}: {name} read never acknowledged"
                    if ack:
                        break
                ctx.set(port.en, 0)
                assert data == table[addr], (f"seed {seed}: {name} entry {addr} read "
                                             f"{data:#x}, not {table[addr]:#x}")
                state["reads"] += 1
                state["busy_reads"] += busy
                if rng.random() < 0.2:
                    await ctx.tick()
        return read

    sim.add_testbench(load_and_feed)
    sim.add_testbench(stamp, background=True)
    sim.add_testbench(collect, background=True)
    if reads:
        sim.add_testbench(reader(dut.index_read, index, "index"))
        sim.add_testbench(reader(dut.dest_read, dests, "dest"))
    sim.run()
    first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w),
                 min(len(got), len(want)))
    assert got == want, (f"seed {seed}, reads {reads}: {len(got)} packets, expected "
                         f"{len(want)}; first difference at packet {first}: "
                         f"{got[first:first + 3]} != expected {want[first:first + 3]}")
    if reads:
        assert state["busy_reads"] > 50, (
            f"seed {seed}: only {state['busy_reads']} of {state['reads']} reads overlapped "
            f"expansion")


def test_route_reads_interleaved_with_traffic(base_seed):
    """A random recurrent network on a 2 x 1 chip (cores on their own clocks, backpressure at
    the host output): while ticks of host events run, the chip bus keeps reading random route
    entries (in and out of range) of both tiles. Every read gives the loaded value, and the
    outputs, membranes, counters and mesh drops equal the golden model's."""
    seed = base_seed + 41
    rng = np.random.default_rng(seed)
    layout = ChipLayout(2, 1, sizes={(0, 0): (6, 8), (1, 0): (5, 4)},
                        lanes={(0, 0): 4, (1, 0): 2}, host=(1, 0), destinations=32)
    program = random_chip_program(layout, seed, topology="recurrent")
    for core in program.cores.values():  # lively: most neurons spike every few ticks
        core.config = NeuronConfig(20, core.config.leak, core.config.reset)
        core.weights = np.abs(core.weights)
    scenario = ChipScenario(layout=layout, program=program,
                            host_events=random_host_events(program, 20, seed, max_events=6),
                            name=f"route-reads-seed{seed}", seed=seed)
    expected = expected_chip(scenario)
    tiles = tile_configs(layout)
    order = program.tiles()
    chip = Chip(cols=2, rows=1, tiles=tiles, host=layout.host)
    maps = {t: CoreMemoryMap(tiles[t].shape, tiles[t].lanes) for t in order}
    tables = {k: {Region.ROUTE_INDEX: [0] * tiles[t].shape.neurons,
                  Region.ROUTE_DEST: [0] * tiles[t].destinations} for k, t in enumerate(order)}
    outputs = []
    state = {"loaded": False, "traffic_done": False, "reads": 0, "busy_reads": 0}
    sim = Simulator(chip)
    sim.add_clock(10e-9, domain="sync")
    sim.add_clock(17e-9, domain="core_0_0")
    sim.add_clock(3.4e-9, domain="core_1_0")
    bus = BusDriver(chip)

    async def main(ctx):
        for _ in range(4):
            await ctx.tick()
        for k, (tile, core) in enumerate(program.cores.items()):
            mm = maps[tile]

            async def core_write(region, offset, value):
                await bus(ctx, k, region, offset, write=True, data=mm.to_word(value))

            for offset, word in enumerate(mm.synapse_region(core.weights)):
                await core_write(Region.SYNAPSE, offset, word)
            for n in range(core.shape.neurons):
                await core_write(Region.BIAS, n, int(core.bias[n]))
            for register, value in core.config.registers().items():
                await core_write(Region.REGISTER, register, value)
            start = 0
            for n, dests in enumerate(core.routes):
                entry = pack(RouteEntry, start=start, count=len(dests),
                                to_host=int(core.to_host[n]))
                tables[k][Region.ROUTE_INDEX][n] = entry
                await bus(ctx, k, Region.ROUTE_INDEX, n, write=True, data=entry)
                for x, y, axon in dests:
                    word = route_dest(x, y, axon)
                    tables[k][Region.ROUTE_DEST][start] = word
                    await bus(ctx, k, Region.ROUTE_DEST, start, write=True, data=word)
                    start += 1
        state["loaded"] = True
        for events in scenario.host_events:
            for x, y, axon in events:
                ctx.set(chip.host_in.payload.as_value(), pack_event(x, y, axon))
                ctx.set(chip.host_in.valid, 1)
                await ctx.tick().until(chip.host_in.ready)
                ctx.set(chip.host_in.valid, 0)
            ctx.set(chip.tick.valid, 1)
            for _ in range(20_000):
                *_, ready = await ctx.tick().sample(chip.tick.ready)
                if ready:
                    break
            else:
                pytest.fail(f"seed {seed}: tick {ctx.get(chip.ticks)} never started: deadlock")
            ctx.set(chip.tick.valid, 0)
        idle = 0
        for _ in range(100_000):
            *_, quiet, out_valid = await ctx.tick().sample(chip.quiet, chip.host_out.valid)
            idle = idle + 1 if quiet and not out_valid else 0
            if idle >= 64:
                break
        else:
            pytest.fail(f"seed {seed}: never quiet after the last tick")
        state["traffic_done"] = True
        while state["traffic_done"] is not None:  # the reader hands the bus back
            await ctx.tick()
        v, counters = {}, {}
        for k, (tile, core) in enumerate(program.cores.items()):
            mm = maps[tile]
            v[tile] = np.array([mm.to_signed(await bus(ctx, k, Region.MEMBRANE, n,
                                                       write=False))
                                for n in range(core.shape.neurons)], np.int64)
            counters[tile] = {REGISTERS[reg].name: await bus(ctx, k, Region.REGISTER, reg,
                                                             write=False)
                              for reg in COUNTERS}
        mesh_drops = ctx.get(chip.mesh_drops)
        observed = ChipResult(outputs=outputs, v=v, counters=counters, mesh_drops=mesh_drops)
        problems = compare_chip(expected, observed, label=f"seed {seed}")
        assert not problems, "\n".join(problems)

    async def reader(ctx):
        while not state["loaded"]:
            await ctx.tick()
        while not state["traffic_done"]:
            k = int(rng.integers(0, len(order)))
            space = (Region.ROUTE_INDEX, Region.ROUTE_DEST)[int(rng.integers(0, 2))]
            table = tables[k][space]
            addr = int(rng.integers(0, len(table) + 4))  # a few past the end
            *_, quiet = await ctx.tick().sample(chip.quiet)
            got = await bus(ctx, k, space, addr, write=False)
            want = table[addr] if addr < len(table) else 0
            assert got == want, (f"seed {seed}: tile {order[k]} {space.name} entry {addr} read "
                                 f"{got:#x} during traffic, not {want:#x}")
            state["reads"] += 1
            state["busy_reads"] += not quiet
        state["traffic_done"] = None

    async def collect(ctx):
        while True:
            ready = int(rng.random() < 0.5)
            ctx.set(chip.host_out.ready, ready)
            *_, valid, payload = await ctx.tick().sample(chip.host_out.valid,
                                                          chip.host_out.payload.as_value())
            if valid and ready:
                _, x, y, neuron, tick = unpack_packet(payload)
                outputs.append((x, y, neuron, tick))

    sim.add_testbench(main)
    sim.add_testbench(reader)
    sim.add_testbench(collect, background=True)
    sim.run()
    assert len(outputs) > 20, f"seed {seed}: only {len(outputs)} outputs, a weak test"
    assert state["busy_reads"] > 50, (f"seed {seed}: only {state['busy_reads']} of "
                                      f"{state['reads']} route reads ran during traffic")
