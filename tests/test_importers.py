"""Importers (firmware/importers/): NIR graphs and snnTorch state dicts into the integer model.

The networks (``import_nets.py``) have weights that are exact multiples of a power-of-two step
``S0``, so the float arithmetic of the independent expectations is exact and the imported
integer model must reproduce them spike for spike. Wider, deeper and recurrent networks:
``test_importers_networks.py``.
"""

import importlib.util

import numpy as np
import pytest

import nir

from import_nets import (Q, S0, _chain, _exact_net, _expected_spikes, _FakeTensor, _int_weights,
                         _lif, _rng, _snntorch_dict, _spikes, _write)
from spikefab.firmware.cli import main
from spikefab.firmware.compiler import compile_model
from spikefab.firmware.importers import (ConversionError, float_forward, from_nir,
                                         from_snntorch, integer_forward, load_state_dict)
from spikefab.firmware.mnist import bundled_slice
from spikefab.firmware.model import Model
from spikefab.hdl.abi import ResetMode


# ---- NIR: exact conversion ------------------------------------------------------------------------

@pytest.mark.parametrize("reset", [None, "subtract"])
def test_nir_lif_exact(tmp_path, base_seed, reset):
    rng = _rng(base_seed, 1)
    graph, params = _exact_net(rng)
    model, report = from_nir(_write(tmp_path, graph), reset=reset, steps=12)
    msg = f"seed {base_seed}"
    assert model.sizes == [20, 8, 4] and model.steps == 12 and model.name == "net", msg
    for layer, (w, b, theta, k), rep in zip(model.layers, params, report.layers):
        np.testing.assert_array_equal(layer.weights, w, err_msg=msg)
        np.testing.assert_array_equal(layer.bias, b, err_msg=msg)
        assert (layer.threshold, layer.leak) == (theta, k), msg
        assert layer.reset == (ResetMode.SUBTRACT if reset == "subtract" else ResetMode.ZERO)
        assert rep.scale == S0 and rep.weight_error_max == 0 and rep.bias_error == 0, msg
        assert rep.decay_chip == rep.decay_source == 1 - 2.0 ** -k, msg
    inputs = _spikes(rng, 12, 3, 20)
    got = model.simulate(inputs)
    want = _expected_spikes(params, inputs, reset=reset or "zero")
    assert got.any(), f"{msg}: the test network never spikes"
    np.testing.assert_array_equal(got, want, err_msg=msg)
    counts, _, _ = integer_forward(model, inputs)   # the report's integer run: same spikes
    np.testing.assert_array_equal(counts, got.sum(axis=0), err_msg=msg)


def _float_if(weights, biases, thresholds, inputs, reset="zero"):
    """An IF network in float64 with the chip's pipeline and comparison (>=): exact here, the
    parameters being multiples of a power of two. Per-neuron thresholds allowed."""
    steps, batch, _ = inputs.shape
    total = steps + len(weights) - 1
    v = [np.zeros((batch, w.shape[1])) for w in weights]
    prev = [np.zeros((batch, w.shape[1])) for w in weights]
    out = []
    for t in range(total):
        now = []
        for l, (w, b, thr) in enumerate(zip(weights, biases, thresholds)):
            x = (inputs[t] if t < steps else np.zeros_like(inputs[0])) if l == 0 else prev[l - 1]
            v[l] = v[l] + x @ w + b
            fired = v[l] >= thr
            v[l] = np.where(fired, v[l] - thr if reset == "subtract" else 0.0, v[l])
            now.append(fired.astype(float))
        prev = now
        out.append(now[-1].astype(bool))
    return np.array(out)


def test_nir_if_matches_float(tmp_path, base_seed):
    rng = _rng(base_seed, 2)
    w1, w2 = _int_weights(rng, 20, 8) * S0, _int_weights(rng, 8, 4) * S0
    graph = _chain(nir.Linear(weight=w1), _lif(8, 200 * S0),
                   nir.Affine(weight=w2, bias=np.full(4, 3 * S0)), _lif(4, 100 * S0))
    model, report = from_nir(_write(tmp_path, graph))
    assert [layer.leak for layer in model.layers] == [0, 0], f"seed {base_seed}"
    assert model.layers[0].bias is None
    inputs = _spikes(rng, 15, 4, 20)
    want = _float_if([w1.T, w2.T], [0.0, np.full(4, 3 * S0)], [200 * S0, 100 * S0], inputs)
    got = model.simulate(inputs)
    assert got.any(), f"seed {base_seed}: the test network never spikes"
    np.testing.assert_array_equal(got, want, err_msg=f"seed {base_seed}")


def test_nir_per_neuron_thresholds_normalized(tmp_path, base_seed):
    """Different thresholds in a layer: each neuron's weights scaled to the largest threshold;
    spikes unchanged (exact here: the factors are 1 and 2)."""
    rng = _rng(base_seed, 3)
    w1 = _int_weights(rng, 20, 8, top=63)
    w1[0, 0] = Q          # neuron 0 keeps threshold 200: its weights may use the full range
    thr1 = np.where(np.arange(8) % 2 == 0, 200.0, 100.0) * S0   # odd neurons: half
    w2 = _int_weights(rng, 8, 4)
    graph = _chain(nir.Linear(weight=w1 * S0),
                   nir.IF(r=np.ones(8), v_threshold=thr1),
                   nir.Linear(weight=w2 * S0), _lif(4, 150 * S0))
    model, report = from_nir(graph)
    assert report.layers[0].thresholds_differ and model.layers[0].threshold == 200
    np.testing.assert_array_equal(model.layers[0].weights,
                                  w1.T * np.where(np.arange(8) % 2 == 0, 1, 2)[None, :])
    inputs = _spikes(rng, 15, 4, 20)
    want = _float_if([w1.T * S0, w2.T * S0], [0.0, 0.0], [thr1, 150 * S0], inputs)
    np.testing.assert_array_equal(model.simulate(inputs), want, err_msg=f"seed {base_seed}")
    assert "normalized" in str(report)


def test_nir_v_leak_folds_into_bias(base_seed):
    rng = _rng(base_seed, 4)
    w = _int_weights(rng, 6, 3)
    # decay 1 - 2**-2: the drive (1 - d) v_leak = v_leak / 4 = 5 steps per tick.
    graph = _chain(nir.Affine(weight=w * S0, bias=np.full(3, 2 * S0)),
                   _lif(3, 100 * S0, k=2, v_leak=20 * S0))
    model, report = from_nir(graph)
    np.testing.assert_array_equal(model.layers[0].bias, np.full(3, 2 + 5))
    assert any("v_leak" in note for note in report.notes)


def test_nir_dt_and_cubalif(base_seed):
    """snnTorch's NIR export convention (dt = 1e-4, tau = dt / (1 - beta), r = tau / dt) gives
    back beta; a CubaLIF with an instantaneous synapse (tau_syn = dt, w_in = 1) is a LIF."""
    rng = _rng(base_seed, 5)
    w = _int_weights(rng, 10, 5) * S0
    dt, beta = 1e-4, 0.875
    tau = np.full(5, dt / (1 - beta))
    lif = nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(5), v_threshold=np.full(5, 90 * S0))
    cuba = nir.CubaLIF(tau_syn=np.full(5, dt), tau_mem=tau, r=tau / dt, v_leak=np.zeros(5),
                       v_threshold=np.full(5, 90 * S0), w_in=1.0)
    a, _ = from_nir(_chain(nir.Linear(weight=w), lif), dt=dt)
    b, _ = from_nir(_chain(nir.Linear(weight=w), cuba), dt=dt)
    assert a.layers[0].leak == 3 and a.layers[0].threshold == 90
    assert a.digest() == b.digest(), f"seed {base_seed}"
    with pytest.raises(ConversionError, match="shorter than the time step"):
        from_nir(_chain(nir.Linear(weight=w), lif))          # dt = 1: tau = 8e-4 < dt


def test_roundtrip_save_load_compile(tmp_path, base_seed):
    rng = _rng(base_seed, 6)
    graph, _ = _exact_net(rng)
    model, _ = from_nir(_write(tmp_path, graph), steps=10)
    path = tmp_path / "model.npz"
    model.save(path)
    again = Model.load(path)
    assert again.digest() == model.digest(), f"seed {base_seed}"
    inputs = _spikes(rng, 10, 2, 20)
    np.testing.assert_array_equal(again.simulate(inputs), model.simulate(inputs))
    image = compile_model(again, "tiny")
    assert image is not None
    four, _ = from_nir(graph, w_bits=4)
    assert four.w_bits == 4 and np.abs(four.layers[0].weights).max() <= 8
    compile_model(four, "tiny")


# ---- NIR: what the chip cannot express --------------------------------------------------------

def _small(rng):
    return _int_weights(rng, 6, 4) * S0


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _refusals(rng):
    w = _small(rng)
    w44 = _int_weights(rng, 4, 4) * S0

    def inp(n=6):
        return nir.Input(input_type=np.array([n]))

    out = nir.Output(output_type=None)
    cases = {
        "branch": (_graph({"input": inp(), "aff": nir.Linear(weight=w), "lif": _lif(4, 1.0),
                           "out": out, "side": nir.Linear(weight=w44),
                           "lif2": _lif(4, 1.0), "out2": nir.Output(output_type=None)},
                          [("input", "aff"), ("aff", "lif"), ("lif", "out"), ("lif", "side"),
                           ("side", "lif2"), ("lif2", "out2")]),
                   "lif", "branches to out, side"),
        "recurrence": (_graph({"input": inp(), "aff": nir.Linear(weight=w),
                               "lif": _lif(4, 1.0), "rec": nir.Linear(weight=w44),
                               "out": out},
                              [("input", "aff"), ("aff", "lif"), ("lif", "rec"), ("rec", "lif"),
                               ("lif", "out")]),
                       "lif", "recurrence"),
        "merge": (_graph({"input": inp(), "a": nir.Linear(weight=w), "b": nir.Linear(weight=w),
                          "lif": _lif(4, 1.0), "out": out},
                         [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"),
                          ("lif", "out")]),
                  "input", "branches"),
        "conv": (_chain(nir.Conv1d(input_shape=6, weight=np.ones((2, 1, 3)), stride=1,
                                   padding=0, dilation=1, groups=1, bias=np.zeros(2)),
                        _lif(8, 1.0), names=["conv", "lif"]),
                 "conv", "convolution"),
        "cuba_slow": (_chain(nir.Linear(weight=w),
                             nir.CubaLIF(tau_syn=np.full(4, 5.0), tau_mem=np.full(4, 8.0),
                                         r=np.full(4, 8.0), v_leak=np.zeros(4),
                                         v_threshold=np.ones(4)),
                             names=["aff", "cuba"]),
                      "cuba", "synaptic"),
        "v_reset": (_chain(nir.Linear(weight=w), _lif(4, 1.0, k=2, v_reset=0.25),
                           names=["aff", "lif"]),
                    "lif", "v_reset"),
        "taus_differ": (_chain(nir.Linear(weight=w),
                               nir.LIF(tau=np.array([4.0, 4, 8, 8]), r=np.ones(4),
                                       v_leak=np.zeros(4), v_threshold=np.ones(4)),
                               names=["aff", "lif"]),
                        "lif", "time constants differ"),
        "readout_li": (_chain(nir.Linear(weight=w),
                              nir.LI(tau=np.full(4, 4.0), r=np.ones(4), v_leak=np.zeros(4)),
                              names=["aff", "li"]),
                       "li", "non-spiking"),
        "too_many_axons": (_chain(nir.Linear(weight=np.full((4, 1100), S0)), _lif(4, 1.0),
                                  names=["aff", "lif"]),
                           "lif", "1100 axons (1100 inputs); a core has at most 1024"),
        "two_weights": (_chain(nir.Linear(weight=w), nir.Linear(weight=w44), _lif(4, 1.0),
                               names=["a", "b", "lif"]),
                        "b", "no neuron between"),
        "no_weights": (_chain(_lif(6, 1.0), names=["lif"]), "lif", "no weight node"),
        "nested": (_graph({"input": inp(), "aff": nir.Linear(weight=w),
                           "sub": nir.NIRGraph.from_list(_lif(4, 1.0)), "out": out},
                          [("input", "aff"), ("aff", "sub"), ("sub", "out")]),
                   "sub", "not a recurrent layer"),
    }
    return cases


def test_nir_refusals_name_node_and_reason(base_seed):
    rng = _rng(base_seed, 7)
    for case, (graph, node, reason) in _refusals(rng).items():
        with pytest.raises(ConversionError) as info:
            from_nir(graph)
        text = str(info.value)
        assert f"'{node}'" in text and reason in text, \
            f"seed {base_seed}, case {case}: {text!r} should name {node!r} and say {reason!r}"
        assert isinstance(info.value, ValueError)


def test_nir_subtract_with_v_reset_refused(base_seed):
    w = _small(_rng(base_seed, 8))
    graph = _chain(nir.Linear(weight=w), _lif(4, 1.0, k=2, v_reset=0.5), names=["aff", "lif"])
    with pytest.raises(ConversionError, match="'lif'.*v_reset = 0.5 with subtract"):
        from_nir(graph, reset="subtract")


def test_nir_unreadable_file(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ConversionError, match="cannot read it as a NIR graph"):
        from_nir(bad)
    with pytest.raises(ConversionError, match="no such file"):
        from_nir(tmp_path / "missing.nir")


# ---- snnTorch ---------------------------------------------------------------------------------

def test_snntorch_matches_nir(base_seed):
    rng = _rng(base_seed, 9)
    graph, params = _exact_net(rng)
    betas = [1 - 2.0 ** -k for *_, k in params]
    via_nir, _ = from_nir(graph)                                     # NIR: reset to zero
    state = _snntorch_dict(params, betas, reset_code=1)
    via_torch, report = from_snntorch(state)
    assert via_torch.digest() == via_nir.digest(), f"seed {base_seed}"
    assert [layer.name for layer in report.layers] == ["fc1 + lif1", "fc2 + lif2"]
    fake = {key: _FakeTensor(value) for key, value in state.items()}  # torch-like values
    assert from_snntorch(fake)[0].digest() == via_nir.digest()
    # nn.Sequential keys, modules registered Linear, Linear, Leaky, Leaky.
    order = [k for k in state if k.startswith("fc")] + [k for k in state if k.startswith("lif")]
    renamed = {k.replace("fc1", "0").replace("fc2", "1").replace("lif1", "2")
               .replace("lif2", "3"): state[k] for k in order}
    assert from_snntorch(renamed)[0].digest() == via_nir.digest()


def test_snntorch_linear_only_with_arguments(base_seed):
    rng = _rng(base_seed, 10)
    _, params = _exact_net(rng, thetas=(128, 128), leaks=(2, 2), bias=False)
    state = {k: v for k, v in _snntorch_dict(params, [0.75, 0.75]).items() if k.startswith("fc")}
    with pytest.raises(ConversionError, match="no beta"):
        from_snntorch(state)
    model, report = from_snntorch(state, beta=0.75, threshold=128 * S0)
    assert [(layer.threshold, layer.leak, layer.reset) for layer in model.layers] == \
        [(128, 2, ResetMode.SUBTRACT)] * 2, f"seed {base_seed}"
    assert any("reset_delay" in note for note in report.notes)
    per_layer, _ = from_snntorch(state, beta=[0.75, 0.5], threshold=128 * S0, reset="zero")
    assert [layer.leak for layer in per_layer.layers] == [2, 1]
    assert per_layer.layers[0].reset == ResetMode.ZERO
    # beta = 0.9 lies between 1 - 2**-3 and 1 - 2**-4: the nearer, k = 3.
    assert from_snntorch(state, beta=0.9, threshold=1.0)[0].layers[0].leak == 3


def test_snntorch_graded_spikes_and_learned_thresholds(base_seed):
    rng = _rng(base_seed, 11)
    _, params = _exact_net(rng, bias=False)
    state = _snntorch_dict(params, [0.875, 0.75])
    base, _ = from_snntorch(state)
    state["lif1.graded_spikes_factor"] = np.array(0.5, np.float32)
    halved, report = from_snntorch(state)
    np.testing.assert_array_equal(halved.layers[0].weights, base.layers[0].weights)
    # fc2's weights are halved; its scale follows, so the integers stay and theta doubles.
    assert halved.layers[1].threshold == 2 * base.layers[1].threshold, f"seed {base_seed}"
    assert any("graded_spikes_factor" in note for note in report.notes)
    state = _snntorch_dict(params, [0.875, 0.75])
    state["lif2.threshold"] = np.array([150, 75, 150, 75], np.float32) * S0  # learn_threshold
    model, report = from_snntorch(state)
    # Normalized to 150: the odd neurons' weights double (so the step s may grow).
    rep, layer = report.layers[1], model.layers[1]
    assert rep.thresholds_differ and rep.threshold_source == 150 * S0, f"seed {base_seed}"
    assert layer.threshold * rep.scale == pytest.approx(150 * S0)
    doubled = params[1][0] * np.array([1, 2, 1, 2]) * S0
    np.testing.assert_array_equal(layer.weights, np.rint(doubled / rep.scale))


def test_snntorch_refusals(base_seed):
    rng = _rng(base_seed, 12)
    _, params = _exact_net(rng)
    good = _snntorch_dict(params, [0.875, 0.75])
    cases = [
        ({**good, "lif2.reset_mechanism_val": np.array(2)}, "lif2", "'none'"),
        ({**good, "conv1.weight": np.ones((2, 1, 3, 3))}, "conv1", "convolution"),
        ({**good, "lif1.recurrent.weight": np.ones((8, 7))}, "lif1.recurrent",
         "a recurrent Linear is (8, 8)"),
        ({**good, "lif9.recurrent.weight": np.ones((8, 8))}, "lif9.recurrent",
         "not a neuron module"),
        ({**good, "lif1.alpha": np.array(0.5)}, "lif1", "synaptic current"),
        ({**good, "bn1.running_mean": np.zeros(8)}, "bn1", "unsupported module"),
        ({k: v for k, v in good.items() if not k.startswith("lif2")}, None, "Leaky neurons"),
        ({**good, "fc2.weight": np.ones((4, 9), np.float32)}, "fc2", "takes 9 inputs"),
    ]
    for state, module, reason in cases:
        with pytest.raises(ConversionError) as info:
            from_snntorch(state)
        text = str(info.value)
        assert reason in text and (module is None or f"'{module}'" in text), \
            f"seed {base_seed}: {text!r} should name {module!r} and say {reason!r}"
    with pytest.raises(ConversionError, match="'lif1'.*beta in the state dict"):
        from_snntorch(good, beta=0.5)
    with pytest.raises(ConversionError, match="'lif1'.*disagrees with the argument reset"):
        from_snntorch({**good, "lif1.reset_mechanism_val": np.array(0)}, reset="zero")


def test_state_dict_files(tmp_path, base_seed):
    rng = _rng(base_seed, 13)
    _, params = _exact_net(rng)
    state = _snntorch_dict(params, [0.875, 0.75])
    path = tmp_path / "weights.npz"
    np.savez(path, **state)
    assert set(load_state_dict(path)) == set(state)
    assert from_snntorch(path)[0].name == "weights"
    assert from_snntorch(path, name="")[0].digest() == from_snntorch(state)[0].digest()
    if importlib.util.find_spec("torch") is None:
        pt = tmp_path / "weights.pt"
        pt.write_bytes(b"\x80\x02}q\x00.")
        with pytest.raises(ConversionError, match=r"pip install torch"):
            from_snntorch(pt)


# ---- float reference and calibration ------------------------------------------------------

def test_float_reference_rules():
    """One neuron, input 0.6 per step, threshold 1, beta 0.5: the source rules by hand."""
    from spikefab.firmware.importers.common import _SourceLayer

    def run(rule, reset, delay=True):
        layer = _SourceLayer(name="x", neuron="x", weight=np.array([[0.6]]), bias=np.zeros(1),
                             threshold=np.ones(1), decay=np.full(1, 0.5),
                             reset=ResetMode[reset.upper()],
                             rule=rule, reset_delay=delay)
        counts, final_v, _ = float_forward([layer], np.ones((4, 1, 1)))
        return int(counts[0, 0]), float(final_v[0, 0])

    # NIR, zero: v = 0.6, 0.9, 1.05 (spike -> 0), 0.6.
    assert run("nir", "zero") == (1, pytest.approx(0.6))
    # NIR, subtract: 0.6, 0.9, 1.05 (spike -> 0.05), 0.625.
    assert run("nir", "subtract") == (1, pytest.approx(0.625))
    # snnTorch, delayed subtract: 0.6, 0.9, 1.05 (spike), 0.525 + 0.6 - 1 = 0.125.
    assert run("snntorch", "subtract") == (1, pytest.approx(0.125))
    # snnTorch, reset_delay=False: the chip's rule, as NIR subtract.
    assert run("snntorch", "subtract", delay=False) == (1, pytest.approx(0.625))
    # snnTorch, delayed zero: 0.6, 0.9, 1.05 (spike), 0 * 0.5 + 0.6.
    assert run("snntorch", "zero") == (1, pytest.approx(0.6))


@pytest.fixture(scope="module")
def mnist_net():
    """A quick 784-32-10 network fitted to images 200-999 of the bundled slice (a random
    projection, then a least-squares readout), as a NIR graph and a state dict."""
    data = bundled_slice()
    rng = np.random.default_rng(12345)
    x = data.images[200:].astype(np.float64) / 255
    w1 = rng.normal(0, 0.08, (32, 784))
    hidden = np.maximum(x @ w1.T, 0)
    w2 = np.linalg.lstsq(hidden, np.eye(10)[data.labels[200:]], rcond=None)[0].T * 0.6
    tau = np.full(32, 8.0)
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=w1), nir.LIF(tau=tau, r=tau.copy(), v_leak=np.zeros(32),
                                       v_threshold=np.ones(32)),
        nir.Linear(weight=w2), nir.IF(r=np.ones(10), v_threshold=np.ones(10)))
    state = {"fc1.weight": w1, "fc2.weight": w2}
    return data, graph, state


def test_calibration_report(mnist_net):
    data, graph, state = mnist_net
    subset = (data.images[:200], data.labels[:200], data.indices[:200])
    model, report = from_nir(graph, steps=20, reset="subtract", calibration=subset)
    c = report.calibration
    assert (c.images, c.steps, c.seed) == (200, 20, 0)
    assert c.float_accuracy > 0.5 and c.integer_accuracy > 0.5, str(report)
    assert abs(c.float_accuracy - c.integer_accuracy) < 0.1, str(report)
    assert c.agreement > 0.8, str(report)
    text = str(report)
    for part in ("float reference", "integer model", "w err", "784->32", "32->10"):
        assert part in text, text
    for layer in report.layers:
        assert 0 < layer.weight_error_max <= 0.5 / 127 * 1.01
        assert 0 < layer.weight_error_mean < 0.05
    # 4-bit weights: coarser, and the report says so.
    _, four = from_nir(graph, steps=20, reset="subtract", w_bits=4, calibration=subset)
    assert four.layers[0].weight_error_mean > report.layers[0].weight_error_mean
    # The same network from a state dict, with snnTorch's rules (beta 1 - 1/8).
    _, torch_report = from_snntorch(state, beta=[0.875, 1.0], threshold=1.0, steps=20,
                                    calibration=subset)
    assert torch_report.calibration.float_accuracy > 0.5, str(torch_report)


# ---- CLI --------------------------------------------------------------------------------------

def test_cli_import(tmp_path, base_seed, capsys, mnist_net):
    rng = _rng(base_seed, 14)
    graph, _ = _exact_net(rng)
    source = _write(tmp_path, graph)
    out = tmp_path / "model.npz"
    assert main(["import", str(source), "-o", str(out), "--steps", "9"]) == 0
    text = capsys.readouterr().out
    assert "affine0 -> lif0" in text and "no calibration" in text and f"wrote {out}" in text
    assert Model.load(out).digest() == from_nir(graph, steps=9, name="net")[0].digest()
    # A 784-input network: calibrated on 200 images of the bundled slice by default.
    _, mnist_graph, state = mnist_net
    big = _write(tmp_path, mnist_graph, "mnist.nir")
    assert main(["import", str(big), "-o", str(out), "--w-bits", "4", "--reset",
                 "subtract"]) == 0
    text = capsys.readouterr().out
    assert "calibration: 200 images of mnist-slice" in text and "4-bit" in text
    # snnTorch arrays in an .npz.
    weights = tmp_path / "weights.npz"
    np.savez(weights, **state)
    assert main(["import", str(weights), "-o", str(out), "--beta", "0.875",
                 "--calibrate", "0"]) == 0
    assert "fc1" in capsys.readouterr().out
    # Errors: one line, no traceback.
    assert main(["import", str(weights), "-o", str(out), "--calibrate", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spikefab import: error:") and "no beta" in err
    assert main(["import", str(tmp_path / "x.onnx"), "-o", str(out)]) == 1
    assert "--format" in capsys.readouterr().err


def test_cli_import_calibrates_on_the_data_named(tmp_path, capsys, mnist_net):
    """--calibrate-data DIR: the test files there, not the bundled (training) slice; the
    report says which; a folder that is not there is an error before any work."""
    from spikefab.firmware.mnist import bundled_slice, write_idx
    _, mnist_graph, _ = mnist_net
    source = _write(tmp_path, mnist_graph, "mnist.nir")
    out = tmp_path / "model.npz"
    data = tmp_path / "mnist"
    data.mkdir()
    some = bundled_slice()
    write_idx(data / "t10k-images-idx3-ubyte", some.images[:40].reshape(-1, 28, 28))
    write_idx(data / "t10k-labels-idx1-ubyte", some.labels[:40].astype(np.uint8))
    assert main(["import", str(source), "-o", str(out), "--reset", "subtract",
                 "--calibrate-data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "calibration: 40 images of" in text and "bundled slice" not in text, text
    assert main(["import", str(source), "-o", str(out), "--reset", "subtract"]) == 0
    assert "optimistic" in capsys.readouterr().out
    assert main(["import", str(source), "-o", str(out), "--calibrate-data",
                 str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "--calibrate-data" in err and "does not exist" in err and "Traceback" not in err
