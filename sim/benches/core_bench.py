"""cocotb bench for :class:`~spikefab.hdl.core.LIFCore`: runs scenarios, records traces.

It is a transactor, not a judge: for every scenario file named in ``SPIKEFAB_SCENARIOS``
(``os.pathsep``-separated ``.npz`` files, see :mod:`spikefab.sim.scenario`) it resets the core,
loads weights, bias, membranes and registers over the memory bus, clears the accumulators, plays
the events of every tick under the scenario's idle pattern, runs the update under its
backpressure pattern, reads back the final state and the counters, and writes the observed
:class:`CoreTrace` next to the scenario (``<name>.rtl.npz``). The test process compares it with
the golden model. ``SPIKEFAB_LANES`` gives the core's lane count.

Python touches the design once per clock cycle (drive, ``ReadOnly``, sample), so stream rules
are kept exactly: ``valid`` is only ever dropped after a transfer.
"""

import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from spikefab.hdl.abi import COUNTERS, REGISTERS, CoreMemoryMap, Region
from spikefab.sim.benches.streams import offer, take
from spikefab.sim.scenario import CoreScenario, CoreTrace



class CoreHarness:
    """Drives one LIFCore's ports from Python, one clock cycle at a time."""

    def __init__(self, dut, memory_map: CoreMemoryMap):
        self.dut = dut
        self.mm = memory_map
        self.cycle = 0

    async def tick(self):
        await RisingEdge(self.dut.clk)
        self.cycle += 1

    async def reset(self):
        dut = self.dut
        for name in ("events__valid", "spikes__ready", "update__valid", "bus__req__valid",
                     "bus__resp__ready"):
            getattr(dut, name).value = 0
        dut.rst.value = 1
        for _ in range(3):
            await self.tick()
        dut.rst.value = 0
        await self.tick()

    async def write(self, addr: int, data: int):
        dut = self.dut
        await offer(self.tick, dut.bus__req__valid, dut.bus__req__payload, dut.bus__req__ready,
                    self.mm.request(addr, write=True, data=self.mm.to_word(data)))

    async def read(self, addr: int) -> int:
        dut = self.dut
        await offer(self.tick, dut.bus__req__valid, dut.bus__req__payload, dut.bus__req__ready,
                    self.mm.request(addr, write=False))
        return await take(self.tick, dut.bus__resp__valid, dut.bus__resp__payload,
                          dut.bus__resp__ready)

    async def load(self, scenario: CoreScenario):
        mm, shape = self.mm, scenario.shape
        for addr, word in mm.synapse_words_of(scenario.weights):
            await self.write(addr, word)
        for n in range(shape.neurons):
            await self.write(mm.addr(Region.BIAS, n), int(scenario.bias[n]))
            await self.write(mm.addr(Region.MEMBRANE, n), int(scenario.v0[n]))
            await self.write(mm.addr(Region.ACCUMULATOR, n), 0)
        config = scenario.config
        for register, value in config.registers().items():
            await self.write(mm.addr(Region.REGISTER, register), value)

    async def deliver(self, axons, gaps) -> int:
        """Offer every event, idling where the pattern says 0; returns the cycles it took."""
        dut, start = self.dut, self.cycle
        for axon in axons:
            while not next(gaps):
                await self.tick()
            await offer(self.tick, dut.events__valid, dut.events__payload, dut.events__ready,
                        int(axon))
        return self.cycle - start

    async def update(self, backpressure) -> tuple[list[int], int]:
        """Request the update, take spikes under backpressure until it is done."""
        dut, start, spikes = self.dut, self.cycle, []
        dut.update__valid.value = 1
        while True:
            ready = next(backpressure)
            dut.spikes__ready.value = ready
            await ReadOnly()
            if ready and int(dut.spikes__valid.value):
                spikes.append(dut.spikes__payload.value.to_unsigned())
            done = int(dut.update__ready.value)
            await self.tick()
            if done:
                break
        dut.update__valid.value = 0
        dut.spikes__ready.value = 0
        return spikes, self.cycle - start

    async def read_state(self, shape):
        mm = self.mm
        v = [mm.to_signed(await self.read(mm.addr(Region.MEMBRANE, n)))
             for n in range(shape.neurons)]
        i = [mm.to_signed(await self.read(mm.addr(Region.ACCUMULATOR, n)))
             for n in range(shape.neurons)]
        counters = {REGISTERS[reg].name: await self.read(mm.addr(Region.REGISTER, reg))
                    for reg in COUNTERS}
        return np.array(v, np.int64), np.array(i, np.int64), counters


async def watch_collisions(dut, seen: list):
    """Every cycle: a memory read at the address being written is a design error (block RAM
    answers it with undefined data on the boards), whatever the simulation shows."""
    cycle = 0
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        cycle += 1
        if dut.rw_collision.value:
            seen.append(cycle)


@cocotb.test()
async def run_scenarios(dut):
    lanes = int(os.environ["SPIKEFAB_LANES"])
    paths = [Path(p) for p in os.environ["SPIKEFAB_SCENARIOS"].split(os.pathsep) if p]
    assert paths, "SPIKEFAB_SCENARIOS names no scenario"
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()  # C++ clock, on Icarus too
    collisions = []
    cocotb.start_soon(watch_collisions(dut, collisions))
    for path in paths:
        scenario = CoreScenario.load(path)
        start = time.perf_counter()
        harness = CoreHarness(dut, CoreMemoryMap(scenario.shape, lanes))
        await harness.reset()
        await harness.load(scenario)
        gaps, backpressure = scenario.gaps.bits(), scenario.backpressure.bits()
        spikes, cycles = [], []
        for axons in scenario.events:
            event_cycles = await harness.deliver(axons, gaps)
            tick_spikes, update_cycles = await harness.update(backpressure)
            spikes.append(np.array(tick_spikes, np.int64))
            cycles.append((event_cycles, update_cycles))
        v, i, counters = await harness.read_state(scenario.shape)
        assert not collisions, (f"scenario {scenario.name}: a memory read at the address being "
                                f"written in {len(collisions)} cycles (first at cycle "
                                f"{collisions[0]} of the run)")
        CoreTrace(spikes=spikes, v=v, i=i, counters=counters,
                  cycles=np.array(cycles, np.int64).reshape(-1, 2),
                  sim_cycles=harness.cycle, sim_seconds=time.perf_counter() - start).save(
            path.with_name(path.name.removesuffix(".npz") + ".rtl.npz"))
