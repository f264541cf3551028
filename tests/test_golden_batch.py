"""The batched input delivery (sim/golden_batch.py) against the plain one, bit for bit.

Random cores and random input of every kind the golden model accepts: sparse and dense 0/1
spikes, rate-coded images, event counts above 1, and densities far past the event budget, so
that accumulators wrap and membranes saturate. Every run prints its seed on failure.
"""

import numpy as np
import pytest

from spikefab.hdl.abi import CoreShape, ResetMode
from spikefab.sim.encoding import rate_encode
from spikefab.sim.golden import CoreModel, NeuronConfig
from spikefab.sim.golden_batch import spike_sums, spike_sums_reference


def _spikes(rng, kind, steps, batch, k):
    if kind == "rate":
        pixels = rng.integers(0, 256, size=(batch, k))
        pixels[rng.random((batch, k)) < 0.6] = 0          # blank background
        pixels[rng.random((batch, k)) < 0.2] = 255        # saturated strokes
        return rate_encode(pixels.astype(np.uint8), steps, int(rng.integers(0, 1000)))
    if kind == "counts":
        return rng.integers(0, 4, size=(steps, batch, k)).astype(np.uint8)
    if kind == "big":   # counts whose sums need float64 or int64 to stay exact
        return rng.integers(0, 40_000, size=(steps, batch, k)).astype(np.int64)
    density = {"sparse": 0.02, "dense": 0.9, "half": 0.5}[kind]
    return (rng.random((steps, batch, k)) < density).astype(np.uint8)


KINDS = ["rate", "sparse", "dense", "half", "counts", "big"]


@pytest.mark.parametrize("kind", KINDS)
def test_spike_sums_equal_the_plain_product(kind, base_seed):
    for offset in range(6):
        seed = base_seed * 1000 + offset
        rng = np.random.default_rng(seed)
        axons, neurons = int(rng.integers(1, 300)), int(rng.integers(1, 70))
        w_bits = int(rng.choice([4, 8]))
        weights = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), size=(axons, neurons))
        k = int(rng.integers(1, axons + 1))
        spikes = _spikes(rng, kind, int(rng.integers(1, 30)), int(rng.integers(1, 150)), k)
        sums, counts = spike_sums(weights, spikes)
        want_sums, want_counts = spike_sums_reference(weights, spikes)
        assert np.array_equal(sums, want_sums), f"seed {seed}, kind {kind}"
        assert np.array_equal(counts, want_counts), f"seed {seed}, kind {kind}"


def test_spike_sums_edge_cases():
    weights = np.arange(12).reshape(4, 3) - 6
    for spikes in (np.zeros((0, 2, 4), np.uint8), np.zeros((3, 2, 4), np.uint8),
                   np.ones((3, 2, 4), np.uint8), np.zeros((3, 0, 4), np.uint8),
                   np.ones((1, 2, 2), np.uint8)):
        sums, counts = spike_sums(weights, spikes)
        want_sums, want_counts = spike_sums_reference(weights, spikes)
        assert np.array_equal(sums, want_sums) and np.array_equal(counts, want_counts)


@pytest.mark.parametrize("kind", ["rate", "dense", "counts"])
def test_core_runs_equal_tick_by_tick(kind, base_seed):
    """A core given the batched sums equals one given each tick's spikes, counters included,
    with event budgets small enough that dense input wraps the accumulators."""
    for offset in range(4):
        seed = base_seed * 1000 + offset
        rng = np.random.default_rng(seed)
        axons, neurons = int(rng.integers(2, 200)), int(rng.integers(1, 40))
        shape = CoreShape(axons=axons, neurons=neurons, w_bits=8, v_bits=int(rng.integers(8, 17)),
                          events_per_tick=int(rng.integers(1, axons + 1)))
        weights = rng.integers(-128, 128, size=(axons, neurons))
        bias = rng.integers(shape.v_min, shape.v_max + 1, size=neurons) // 4
        config = NeuronConfig(int(rng.integers(1, shape.v_max + 1)),
                              int(rng.integers(0, shape.v_bits)),
                              ResetMode(int(rng.integers(0, 2))))
        spikes = _spikes(rng, kind, int(rng.integers(1, 20)), int(rng.integers(1, 60)), axons)
        plain = CoreModel(shape, weights, config, bias, batch=spikes.shape[1])
        batched = CoreModel(shape, weights, config, bias, batch=spikes.shape[1])
        sums, counts = spike_sums(weights, spikes)
        for t in range(spikes.shape[0]):
            plain.deliver_spikes(spikes[t])
            batched.deliver_sums(sums[t], counts[t])
            assert np.array_equal(plain.i, batched.i), f"seed {seed}, tick {t}"
            assert np.array_equal(plain.update(), batched.update()), f"seed {seed}, tick {t}"
            assert np.array_equal(plain.v, batched.v), f"seed {seed}, tick {t}"
        assert plain.counters == batched.counters, f"seed {seed}"
        if kind == "dense":
            assert plain.counters.over_budget > 0 or shape.events_per_tick >= axons, \
                f"seed {seed}: meant to pass the budget"


def test_core_run_wraps_like_single_events(base_seed):
    """Past the budget the batched sums wrap exactly as events delivered one at a time."""
    seed = base_seed
    rng = np.random.default_rng(seed)
    shape = CoreShape(axons=64, neurons=8, w_bits=8, v_bits=12, events_per_tick=2)
    weights = rng.integers(100, 128, size=(64, 8))         # same sign: the sum must wrap
    spikes = (rng.random((5, 3, 64)) < 0.9).astype(np.uint8)
    single = CoreModel(shape, weights, NeuronConfig(2000, 1), batch=3)
    batched = CoreModel(shape, weights, NeuronConfig(2000, 1), batch=3)
    sums, counts = spike_sums(weights, spikes)
    for t in range(5):
        for b in range(3):
            single.deliver(np.repeat(np.arange(64), spikes[t, b]), run=b)
        batched.deliver_sums(sums[t], counts[t])
        assert np.array_equal(single.i, batched.i), f"seed {seed}, tick {t}"
        single.update(), batched.update()
        assert np.array_equal(single.v, batched.v), f"seed {seed}, tick {t}"
    assert single.counters == batched.counters and single.counters.over_budget > 0
