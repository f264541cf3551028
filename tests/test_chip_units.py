"""The chip top in Amaranth's simulator (small, fast) and its constructor checks."""

import pytest
from amaranth.sim import Simulator

from spikefab.hdl.aer import pack_event
from spikefab.hdl.chip import Chip, TileConfig
from spikefab.sim.golden import CoreShape

from conftest import raises_in_constructor

TILES = {(0, 0): TileConfig(CoreShape(8, 4), lanes=4), (1, 0): TileConfig(CoreShape(4, 3), lanes=2)}


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
