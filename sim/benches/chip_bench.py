"""cocotb bench for :class:`~spikefab.hdl.chip.Chip`: runs chip scenarios, records results.

Every clock domain gets its own clock (``SPIKEFAB_SCENARIOS`` names pickled
:class:`ChipScenario` files; their periods are used). The bench loads every core and route
table over the chip bus, then per tick injects the host events under the idle pattern and raises
``tick``; a background task takes output packets under the backpressure pattern. At the end it
waits for ``quiet``, reads back membranes and counters, and writes ``<scenario>.result``.
"""

import os
import time
import pickle
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from spikefab.hdl.abi import (COUNTERS, REGISTERS, CoreMemoryMap, Region, pack, pack_event,
                              route_dest, route_entry, unpack_packet)
from spikefab.hdl.chip import chip_request_layout
from spikefab.sim.benches.streams import offer, take
from spikefab.sim.chip_rtl import ChipResult, tile_configs

#: Mesh cycles a tick may take before the bench calls it a deadlock.
TICK_TIMEOUT = 200_000



class ChipHarness:
    def __init__(self, dut, scenario):
        self.dut = dut
        self.scenario = scenario
        program = scenario.program
        self.order = program.tiles()
        self.maps = {t: CoreMemoryMap(p.shape, scenario.layout.lanes[t])
                     for t, p in program.cores.items()}
        self.layout = chip_request_layout(tile_configs(scenario.layout))
        self.cycle = 0

    async def tick(self):
        await RisingEdge(self.dut.clk)
        self.cycle += 1

    async def bus(self, tile, region, offset, *, write, data=0):
        dut = self.dut
        word = pack(self.layout, tile=self.order.index(tile), region=region, offset=offset,
                    write=int(write), data=data)
        await offer(self.tick, dut.bus__req__valid, dut.bus__req__payload, dut.bus__req__ready,
                    word)
        if write:
            return None
        return await take(self.tick, dut.bus__resp__valid, dut.bus__resp__payload,
                          dut.bus__resp__ready)

    async def load(self):
        program = self.scenario.program
        for tile, core in program.cores.items():
            mm = self.maps[tile]

            async def core_write(region, offset, value):
                await self.bus(tile, region, offset, write=True, data=mm.to_word(value))

            for offset, word in enumerate(mm.synapse_region(core.weights)):
                await core_write(Region.SYNAPSE, offset, word)
            for n in range(core.shape.neurons):
                await core_write(Region.BIAS, n, int(core.bias[n]) if
                                 core.bias is not None else 0)
                # Memories keep their contents across a reset: start from a clean state.
                await core_write(Region.MEMBRANE, n, 0)
                await core_write(Region.ACCUMULATOR, n, 0)
            for register, value in core.config.registers().items():
                await core_write(Region.REGISTER, register, value)
            start = 0
            for n, dests in enumerate(core.routes):
                entry = route_entry(start, len(dests), bool(core.to_host[n]))
                await self.bus(tile, Region.ROUTE_INDEX, n, write=True, data=entry)
                for x, y, axon in dests:
                    await self.bus(tile, Region.ROUTE_DEST, start, write=True,
                                   data=route_dest(x, y, axon))
                    start += 1

    async def collect(self, outputs, backpressure):
        dut = self.dut
        while True:
            ready = next(backpressure)
            dut.host_out__ready.value = ready
            await ReadOnly()
            if ready and int(dut.host_out__valid.value):
                _, x, y, neuron, tick = unpack_packet(dut.host_out__payload.value.to_unsigned())
                outputs.append((x, y, neuron, tick))
            await RisingEdge(dut.clk)

    async def stall(self, probability, seed):
        """Freeze random routers, each cycle, each with ``probability``."""
        dut, rng = self.dut, np.random.default_rng(seed)
        width = len(self.order)
        while True:
            bits = rng.random((1024, width)) < probability
            for row in bits:
                dut.mesh_stall.value = int(sum(1 << k for k in np.flatnonzero(row)))
                await RisingEdge(dut.clk)

    async def run(self):
        dut, scenario = self.dut, self.scenario
        gaps = scenario.gaps.bits()
        outputs = []
        collector = cocotb.start_soon(self.collect(outputs, scenario.backpressure.bits()))
        staller = (cocotb.start_soon(self.stall(scenario.mesh_stalls, scenario.seed))
                   if scenario.mesh_stalls else None)
        started = time.perf_counter()
        start = self.cycle
        for events in scenario.host_events:
            for x, y, axon in events:
                while not next(gaps):
                    await self.tick()
                await offer(self.tick, dut.host_in__valid, dut.host_in__payload,
                            dut.host_in__ready, pack_event(x, y, axon))
            dut.tick__valid.value = 1
            waited = 0
            while True:
                await ReadOnly()
                fire = int(dut.tick__ready.value)
                waited += 1
                assert waited < TICK_TIMEOUT, (
                    f"{scenario.name}: tick {int(dut.ticks.value)} not started after "
                    f"{TICK_TIMEOUT} cycles (quiet={dut.quiet.value}): deadlock")
                await self.tick()
                if fire:
                    break
            dut.tick__valid.value = 0
        # Wait until the last update is done and nothing is in flight or queued for the host.
        idle, waited = 0, 0
        while idle < 64:
            waited += 1
            assert waited < TICK_TIMEOUT, f"{scenario.name}: never quiet after the last tick"
            await ReadOnly()
            idle = idle + 1 if int(dut.quiet.value) and not int(dut.host_out__valid.value) else 0
            await self.tick()
        cycles = self.cycle - start
        seconds = time.perf_counter() - started
        collector.cancel()
        if staller is not None:
            staller.cancel()
        dut.mesh_stall.value = 0
        v, counters = {}, {}
        for tile, core in scenario.program.cores.items():
            mm = self.maps[tile]
            v[tile] = np.array([mm.to_signed(await self.bus(tile, Region.MEMBRANE, n,
                                                            write=False))
                                for n in range(core.shape.neurons)], np.int64)
            counters[tile] = {REGISTERS[reg].name: await self.bus(tile, Region.REGISTER, reg,
                                                                  write=False)
                              for reg in COUNTERS}
        return ChipResult(outputs=outputs, v=v, counters=counters,
                          mesh_drops=dut.mesh_drops.value.to_unsigned(), cycles=cycles,
                          seconds=seconds)


async def watch_collisions(dut, k: int, clock, seen: list):
    """Core ``k``'s memories are never read at the address being written (LIFCore's
    ``rw_collision``); every cycle of its clock is checked."""
    while True:
        await RisingEdge(clock)
        await ReadOnly()
        if (int(dut.rw_collision.value) >> k) & 1:
            seen.append(k)


@cocotb.test()
async def run_scenarios(dut):
    paths = [Path(p) for p in os.environ["SPIKEFAB_SCENARIOS"].split(os.pathsep) if p]
    assert paths, "SPIKEFAB_SCENARIOS names no scenario"
    first = pickle.loads(paths[0].read_bytes())
    tiles = first.program.tiles()
    Clock(dut.clk, first.mesh_period_ps, unit="ps", impl="gpi").start()
    for x, y in tiles:
        period = first.core_periods_ps.get((x, y), first.mesh_period_ps)
        Clock(getattr(dut, f"core_{x}_{y}_clk"), period, unit="ps", impl="gpi").start()
    collisions = []
    for k, (x, y) in enumerate(tiles):
        cocotb.start_soon(watch_collisions(dut, k, getattr(dut, f"core_{x}_{y}_clk"),
                                           collisions))
    for path in paths:
        scenario = pickle.loads(path.read_bytes())
        harness = ChipHarness(dut, scenario)
        for name in ("host_in__valid", "host_out__ready", "tick__valid", "bus__req__valid",
                     "bus__resp__ready", "mesh_stall"):
            getattr(dut, name).value = 0
        resets = [dut.rst] + [getattr(dut, f"core_{x}_{y}_rst") for x, y in tiles]
        for r in resets:
            r.value = 1
        await Timer(20 * max([scenario.mesh_period_ps, *scenario.core_periods_ps.values()]),
                    unit="ps")
        for r in resets:
            r.value = 0
        for _ in range(4):
            await harness.tick()
        dut._log.info("loading %s", scenario.name)
        await harness.load()
        dut._log.info("running %d ticks", scenario.ticks)
        result = await harness.run()
        assert not collisions, (f"{scenario.name}: a core memory read at the address being "
                                f"written, {len(collisions)} times (cores "
                                f"{sorted(set(collisions))})")
        path.with_suffix(".result").write_bytes(pickle.dumps(result))
