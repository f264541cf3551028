"""The golden model against docs/semantics.md: hand-worked examples and properties."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from spikefab.sim.scenario import Pattern
from spikefab.sim.golden import CoreModel, NeuronConfig, decode, lif_update, wrap
from spikefab.hdl.abi import CoreShape, ResetMode


def _model(weights, threshold=10, leak=0, reset=ResetMode.SUBTRACT, bias=None, **shape):
    weights = np.asarray(weights)
    shape = CoreShape(axons=weights.shape[0], neurons=weights.shape[1], **shape)
    return CoreModel(shape, weights, NeuronConfig(threshold, leak, reset), bias)


class TestUpdateRule:
    def test_no_leak_when_k_is_zero(self):
        v, s = lif_update([5, -7], [0, 0], [0, 0], NeuronConfig(100, 0), 16)
        assert v.tolist() == [5, -7] and not s.any()

    def test_leak_is_a_floor_shift(self):
        # -3 >> 1 = -2 (floor), so L = -3 - (-2) = -1; 7 >> 1 = 3, so L = 4.
        v, _ = lif_update([-3, 7, -1], [0, 0, 0], [0, 0, 0], NeuronConfig(100, 1), 16)
        assert v.tolist() == [-1, 4, 0]

    def test_saturation_at_both_ends(self):
        v, s = lif_update([32767, -32768], [10_000, -10_000], [5, -5],
                          NeuronConfig(32767, 0), 16)
        assert v.tolist() == [0, -32768] and s.tolist() == [True, False]

    def test_subtract_and_zero_reset(self):
        cfg = NeuronConfig(10, 0, ResetMode.SUBTRACT)
        assert lif_update([0], [25], [0], cfg, 16)[0].tolist() == [15]
        cfg = NeuronConfig(10, 0, ResetMode.ZERO)
        assert lif_update([0], [25], [0], cfg, 16)[0].tolist() == [0]

    def test_threshold_is_inclusive_and_bias_counts(self):
        v, s = lif_update([0, 0], [9, 9], [1, 0], NeuronConfig(10, 0), 16)
        assert s.tolist() == [True, False] and v.tolist() == [0, 9]


class TestCore:
    def test_delivery_and_update(self):
        m = _model([[1, 2], [3, -4]], threshold=3, events_per_tick=3)
        m.deliver([0, 1, 1])
        assert m.i[0].tolist() == [7, -6]
        assert m.update()[0].tolist() == [True, False]
        assert m.v[0].tolist() == [4, -6] and m.i[0].tolist() == [0, 0]

    def test_out_of_range_events_are_dropped_and_over_budget_ones_counted(self):
        m = _model([[1], [2], [4]], threshold=100, events_per_tick=2)
        m.deliver([3, 1023, 0, 1, 2])
        assert m.i[0].tolist() == [7]
        c = m.counters
        assert (c.events, c.sops, c.drop_range, c.over_budget) == (3, 3, 2, 1)
        m.update()
        m.deliver([2])  # the budget is per tick
        assert m.i[0].tolist() == [4] and m.counters.ticks == 1
        assert m.counters.over_budget == 1

    def test_past_the_budget_the_accumulator_wraps(self):
        # E = 1 with 4-bit weights: I is 4 bits wide, -8 .. 7.
        m = _model([[7], [7], [-8]], w_bits=4, threshold=100, events_per_tick=1)
        assert m.shape.accumulator_bits == 4
        m.deliver([0, 1])
        assert m.i[0].tolist() == [-2]                 # 14 wraps to 14 - 16
        m.deliver([2, 2])
        assert m.i[0].tolist() == [-2]                 # -2 - 16 = -18 wraps to -2
        assert m.counters.over_budget == 3

    def test_wrap_is_twos_complement(self):
        assert wrap(np.array([7, 8, -8, -9, 16, -17]), 4).tolist() == [7, -8, -8, 7, 0, -1]

    def test_accumulator_width_covers_the_budget(self):
        shape = CoreShape(axons=1024, neurons=1, w_bits=8)
        assert shape.accumulator_bits == 18  # -128 * 1024 = -2**17
        assert CoreShape(axons=1, neurons=1, w_bits=4).accumulator_bits == 4

    def test_batch_runs_are_independent(self):
        rng = np.random.default_rng(1)
        w = rng.integers(-128, 128, size=(20, 6))
        spikes = rng.integers(0, 2, size=(30, 4, 20))
        batched = _model(w, threshold=50, leak=2, bias=rng.integers(-9, 9, 6))
        batched = CoreModel(batched.shape, w, batched.config, batched.bias, batch=4)
        together = batched.run(spikes)
        for b in range(4):
            alone = CoreModel(batched.shape, w, batched.config, batched.bias)
            assert np.array_equal(alone.run(spikes[:, b:b + 1])[:, 0], together[:, b])

    def test_matrix_delivery_equals_event_delivery(self):
        rng = np.random.default_rng(2)
        w = rng.integers(-8, 8, size=(12, 5))
        counts = rng.integers(0, 3, size=(1, 12))
        a, b = _model(w, w_bits=4, events_per_tick=24), _model(w, w_bits=4, events_per_tick=24)
        a.deliver_spikes(counts)
        b.deliver(np.repeat(np.arange(12), counts[0]))
        assert np.array_equal(a.i, b.i) and a.counters == b.counters

    @pytest.mark.parametrize("seed", range(6))
    def test_over_budget_delivery_is_the_same_in_any_order(self, seed):
        """Past the budget the accumulator wraps: the matrix product, the events one by one
        and the events shuffled give the same I and counters."""
        rng = np.random.default_rng(seed)
        w_bits = int(rng.choice([4, 8]))
        lim = 1 << (w_bits - 1)
        w = rng.integers(-lim, lim, size=(9, 5))
        budget = int(rng.integers(1, 6))
        batch = 3
        shape = CoreShape(axons=9, neurons=5, w_bits=w_bits, events_per_tick=budget)
        counts = rng.integers(0, 40, size=(batch, 9))
        bulk = CoreModel(shape, w, NeuronConfig(100, 0), batch=batch)
        bulk.deliver_spikes(counts[:, :4])                 # two calls in one tick
        bulk.deliver_spikes(counts)
        one = CoreModel(shape, w, NeuronConfig(100, 0), batch=batch)
        for b in range(batch):
            events = np.concatenate([np.repeat(np.arange(4), counts[b, :4]),
                                     np.repeat(np.arange(9), counts[b])])
            one.deliver(rng.permutation(events), run=b)
        assert np.array_equal(bulk.i, one.i), f"seed {seed}"
        assert bulk.counters == one.counters, f"seed {seed}"
        total = counts.sum(1) + counts[:, :4].sum(1)
        assert bulk.counters.over_budget == int(np.clip(total - budget, 0, None).sum())
        exact = counts[:, :4] @ w[:4] + counts @ w
        assert np.array_equal(bulk.i, wrap(exact, shape.accumulator_bits))

    def test_a_tick_past_the_float_bound_is_exact(self):
        shape = CoreShape(axons=2, neurons=1, events_per_tick=1)
        m = CoreModel(shape, [[-128], [127]], NeuronConfig(100, 0))
        counts = np.array([[1 << 20, 3]])                  # 2**27 weights: float32 is inexact
        m.deliver_spikes(counts)
        assert m.i[0].tolist() == [int(wrap(-128 * (1 << 20) + 3 * 127, 8))]

    def test_narrow_delivery_means_the_first_axons(self):
        rng = np.random.default_rng(3)
        w = rng.integers(-128, 128, size=(10, 4))
        spikes = rng.integers(0, 2, size=(1, 6))
        a, b = _model(w), _model(w)
        a.deliver_spikes(spikes)
        b.deliver_spikes(np.hstack([spikes, np.zeros((1, 4), int)]))
        assert np.array_equal(a.i, b.i) and a.counters == b.counters
        with pytest.raises(ValueError, match=r"k <= 10"):
            a.deliver_spikes(np.zeros((1, 11), int))

    def test_int32_state_is_exact_at_the_widest_core(self):
        shape = CoreShape(axons=1024, neurons=1, v_bits=24, events_per_tick=65535)
        lo = shape.events_per_tick * shape.w_min          # the accumulator's extremes
        for v, i, b in [(shape.v_min, lo, shape.v_min), (shape.v_max, -lo, shape.v_max)]:
            config = NeuronConfig(shape.v_max, 0)
            narrow = lif_update(np.array([v], np.int32), np.array([i], np.int32), np.array([b]),
                                config, 24)
            wide = lif_update(np.array([v]), np.array([i]), np.array([b]), config, 24)
            assert narrow[0].tolist() == wide[0].tolist() and narrow[1].tolist() == wide[1].tolist()

    def test_trace(self):
        m = _model([[6]], threshold=10)
        spikes, v = m.run(np.ones((3, 1, 1), np.uint8), trace=True)
        assert v[:, 0, 0].tolist() == [6, 2, 8] and spikes[:, 0, 0].tolist() == [0, 1, 0]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), w_bits=st.sampled_from([4, 8]), leak=st.integers(0, 15),
       reset=st.sampled_from(list(ResetMode)))
def test_delivery_order_never_matters(data, w_bits, leak, reset):
    axons = data.draw(st.integers(1, 12))
    neurons = data.draw(st.integers(1, 6))
    lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    w = np.array(data.draw(st.lists(st.lists(st.integers(lo, hi), min_size=neurons,
                                             max_size=neurons),
                                    min_size=axons, max_size=axons)))
    events = data.draw(st.lists(st.integers(0, axons - 1), max_size=axons))
    order = data.draw(st.permutations(events))
    theta = data.draw(st.integers(1, 32767))
    a = _model(w, threshold=theta, leak=leak, reset=reset, w_bits=w_bits)
    b = _model(w, threshold=theta, leak=leak, reset=reset, w_bits=w_bits)
    a.v[:] = b.v[:] = data.draw(st.integers(-32768, 32767))
    a.deliver(events)
    b.deliver(order)
    assert np.array_equal(a.update(), b.update())
    assert np.array_equal(a.v, b.v)


@settings(max_examples=300, deadline=None)
@given(v=st.integers(-32768, 32767), i=st.integers(-(1 << 17), (1 << 17) - 1),
       b=st.integers(-32768, 32767), theta=st.integers(1, 32767), leak=st.integers(0, 15),
       reset=st.sampled_from(list(ResetMode)))
def test_saturation_bounds_hold(v, i, b, theta, leak, reset):
    # int32 state (what CoreModel keeps) and int64 give the same update.
    config = NeuronConfig(theta, leak, reset)
    narrow = lif_update(np.array([v], np.int32), np.array([i], np.int32), np.array([b]), config, 16)
    wide = lif_update(np.array([v], np.int64), np.array([i], np.int64), np.array([b]), config, 16)
    assert narrow[0].dtype == np.int32 and wide[0].dtype == np.int64
    assert narrow[0].tolist() == wide[0].tolist() and narrow[1].tolist() == wide[1].tolist()
    new_v, spike = lif_update(np.array([v]), np.array([i]), np.array([b]),
                              NeuronConfig(theta, leak, reset), 16)
    leaked = v if leak == 0 else v - (v >> leak)
    total = min(max(leaked + i + b, -32768), 32767)
    assert bool(spike[0]) == (total >= theta)
    if not spike[0]:
        assert new_v[0] == total and -32768 <= total < theta
    elif reset is ResetMode.SUBTRACT:
        assert 0 <= new_v[0] == total - theta <= 32767 - theta
    else:
        assert new_v[0] == 0


class TestValidation:
    @pytest.mark.parametrize("kwargs, message", [
        (dict(axons=0, neurons=1), r"axons must be in \[1, 1024\], not 0"),
        (dict(axons=1025, neurons=1), r"axons must be in \[1, 1024\], not 1025"),
        (dict(axons=1, neurons=257), r"neurons must be in \[1, 256\], not 257"),
        (dict(axons=1, neurons=1, w_bits=6), r"w_bits must be 4 or 8, not 6"),
        (dict(axons=1, neurons=1, v_bits=32), r"v_bits must be in \[8, 24\], not 32"),
        (dict(axons=1, neurons=1, events_per_tick=0), r"events_per_tick must be in"),
        (dict(axons="8", neurons=1), r"axons must be an integer, not '8'"),
    ])
    def test_shape(self, kwargs, message):
        with pytest.raises((ValueError, TypeError), match=message):
            CoreShape(**kwargs)

    @pytest.mark.parametrize("config, message", [
        (NeuronConfig(0), r"threshold must be in \[1, 32767\], not 0"),
        (NeuronConfig(40000), r"threshold must be in \[1, 32767\], not 40000"),
        (NeuronConfig(5, 16), r"leak must be in \[0, 15\], not 16"),
        (NeuronConfig(5, 0, 7), r"reset must be a ResetMode .* not 7"),
    ])
    def test_config(self, config, message):
        with pytest.raises(ValueError, match=message):
            CoreModel(CoreShape(2, 2), np.zeros((2, 2), int), config)

    def test_weights(self):
        shape, cfg = CoreShape(2, 3, w_bits=4), NeuronConfig(5)
        with pytest.raises(ValueError, match=r"weights must have shape \(2, 3\), not \(3, 2\)"):
            CoreModel(shape, np.zeros((3, 2), int), cfg)
        with pytest.raises(ValueError, match=r"weights must lie in \[-8, 7\]; found 8"):
            CoreModel(shape, np.full((2, 3), 8), cfg)
        with pytest.raises(TypeError, match="weights must hold integers, not float64"):
            CoreModel(shape, np.zeros((2, 3)), cfg)


def test_decode_breaks_ties_by_membrane_then_index():
    counts = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [0, 0, 0, 0]])
    final_v = np.array([[0, 5, 9, 0], [1, 1, 1, 1], [0, 4, 4, -1]])
    assert decode(counts, final_v).tolist() == [2, 0, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="sometimes"), "pattern kind must be always, cycle or random, not 'sometimes'"),
    (dict(kind="cycle", cycle=(0, 0)), r"a cycle pattern needs at least one 1, got \(0, 0\)"),
    (dict(kind="random", p=0.0), "a random pattern needs 0 < p <= 1, got 0.0"),
])
def test_bench_pattern_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Pattern(**kwargs)


def test_patterns_are_what_they_say():
    take = lambda p, n: [next(b) for b in [p.bits()] for _ in range(n)]
    assert take(Pattern("cycle", cycle=(1, 0, 0)), 6) == [1, 0, 0, 1, 0, 0]
    bits = take(Pattern("random", p=0.25, seed=3), 4000)
    assert bits == take(Pattern("random", p=0.25, seed=3), 4000) and 850 < sum(bits) < 1150
