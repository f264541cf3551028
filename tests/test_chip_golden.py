"""The golden model of a chip: routing, multicast, one tick per hop, batching, drops."""

import numpy as np
import pytest

from spikefab.sim.chip import ChipModel, ChipProgram, CoreProgram
from spikefab.sim.golden import CoreModel, NeuronConfig
from spikefab.hdl.abi import CoreShape


def _core(rng, axons, neurons, **kwargs):
    return CoreProgram(shape=CoreShape(axons, neurons), config=NeuronConfig(60, 2),
                       weights=rng.integers(-20, 60, size=(axons, neurons)), **kwargs)


def test_two_layers_equal_two_core_models_with_one_tick_of_lag(base_seed):
    rng = np.random.default_rng(base_seed)
    hidden = _core(rng, 12, 6, routes=[[(1, 0, n)] for n in range(6)])
    out = _core(rng, 6, 3, to_host=np.ones(3, bool))
    chip = ChipModel(ChipProgram(2, 1, {(0, 0): hidden, (1, 0): out}))
    inputs = rng.random((20, 12)) < 0.5
    a = CoreModel(hidden.shape, hidden.weights, hidden.config)
    b = CoreModel(out.shape, out.weights, out.config)
    want, got = [], []
    previous = np.zeros((1, 6), bool)
    for t in range(20):
        b.deliver_spikes(previous.astype(int))
        a.deliver_spikes(inputs[t][None].astype(int))
        previous = a.update()
        want += [(1, 0, int(n), t) for n in np.flatnonzero(b.update()[0])]
        got += chip.step([[(0, 0, int(i)) for i in np.flatnonzero(inputs[t])]])[0]
    assert got == want and len(want) > 5


def test_multicast_self_loops_and_batches(base_seed):
    rng = np.random.default_rng(base_seed + 1)
    routes = [[(0, 0, 3), (1, 1, 0), (1, 1, 0)], [(0, 0, 0)], [], [(1, 0, 2)]]
    program = ChipProgram(2, 2, {
        (0, 0): _core(rng, 4, 4, routes=routes, to_host=[1, 0, 1, 1]),
        (1, 0): _core(rng, 3, 2, to_host=[1, 1]),
        (0, 1): _core(rng, 2, 2),
        (1, 1): _core(rng, 2, 5, to_host=np.ones(5, bool)),
    }, host=(1, 1))
    events = [[[(0, 0, int(a)) for a in rng.integers(0, 4, size=rng.integers(0, 3))]
               for _ in range(3)] for _ in range(30)]
    together = ChipModel(program, batch=3)
    out_together = [together.step(tick) for tick in events]
    for b in range(3):
        alone = ChipModel(program)
        assert [alone.step([tick[b]])[0] for tick in events] == [o[b] for o in out_together]
    assert any(ev[0] == 1 for o in out_together for run in o for ev in run)  # reached (1, x)


def test_events_for_missing_cores_or_axons_are_dropped_and_counted():
    rng = np.random.default_rng(0)
    program = ChipProgram(2, 1, {
        (0, 0): CoreProgram(CoreShape(2, 1), NeuronConfig(1), np.full((2, 1), 5),
                            routes=[[(5, 0, 0), (1, 0, 9), (1, 0, 0)]]),
        (1, 0): _core(rng, 3, 1)})
    chip = ChipModel(program)
    chip.step([[(0, 0, 0), (3, 3, 0), (0, 0, 7)]])  # two bad host events; neuron 0 spikes
    assert chip.mesh_drops == 2 + 2  # and two of its three routes lead nowhere
    assert chip.cores[1, 0].counters.events == 0
    chip.step()
    assert chip.cores[1, 0].counters.events == 1


@pytest.mark.parametrize("make, message", [
    (lambda c: ChipProgram(9, 1, {}), r"cols must be in \[1, 8\], not 9"),
    (lambda c: ChipProgram(2, 1, {(0, 0): c}), r"missing \[\(1, 0\)\]"),
    (lambda c: ChipProgram(1, 1, {(0, 0): c}, host=(1, 0)), r"host tile \(1, 0\) is outside"),
    (lambda c: CoreProgram(c.shape, c.config, c.weights, routes=[[]]),
     "routes must list destinations for each of the 2 neurons, not 1"),
    (lambda c: CoreProgram(c.shape, c.config, c.weights, routes=[[(0, 0)], []]),
     r"neuron 0: a destination is \(x, y, axon\)"),
    (lambda c: CoreProgram(c.shape, c.config, c.weights, to_host=[1]),
     r"to_host must have shape \(2,\)"),
])
def test_validation(make, message):
    core = CoreProgram(CoreShape(2, 2), NeuronConfig(5), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=message):
        make(core)
