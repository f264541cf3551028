"""Importers, networks beyond a feed-forward chain of small layers: layers wider than a core,
three layers, recurrent layers from snnTorch (RLeaky) and NIR (its nested-graph export), and
the report's word on NIR's missing reset mode."""

import numpy as np
import pytest

import nir

from import_nets import S0, _exact_net, _lif, _rng, _snntorch_dict, _spikes, _write
from spikefab.firmware.importers import ConversionError, from_nir, from_snntorch


def test_wide_and_deep_networks_import_and_compile(base_seed):
    """Layers wider than a core (the mapper splits them) and three layers import; the model
    compiles for a generated chip whose golden run equals Model.forward."""
    from spikefab.firmware.compiler import compile_model
    from spikefab.sim.golden_chip import GoldenChip
    rng = _rng(base_seed, 14)
    _, params = _exact_net(rng, sizes=(30, 300, 40, 10), thetas=(300, 150, 150),
                           leaks=(3, 2, 2), bias=False)
    state = _snntorch_dict(params, [0.875, 0.75, 0.75])
    model, report = from_snntorch(state)
    assert report.sizes == [30, 300, 40, 10]
    image = compile_model(model)
    assert len(image.input_tiles) == 2   # 300 neurons: two cores of 150
    spikes = _spikes(rng, 8, 4, 30, p=0.5)
    chip = GoldenChip(image.info)
    chip.load(image)
    got, want = chip.run(spikes), model.forward(spikes)
    assert want.counts.sum() > 0, f"seed {base_seed}: the network never answered"
    np.testing.assert_array_equal(got.counts, want.counts, err_msg=f"seed {base_seed}")
    np.testing.assert_array_equal(got.final_v, want.final_v[-1])


def test_nir_recurrent_layer_as_snntorch_exports_it(tmp_path, base_seed):
    """A nested graph input -> lif, lif -> w_rec -> lif, lif -> output (snnTorch's RLeaky
    export) is a recurrent layer: the same model as the state dict with recurrent.weight."""
    rng = _rng(base_seed, 15)
    graph, params = _exact_net(rng, bias=False)
    loop = rng.integers(-60, 61, size=(8, 8))          # loop[m, n]: from neuron m to neuron n
    lif = graph.nodes["lif0"]
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([8])), "lif": lif,
                              "w_rec": nir.Linear(weight=loop.T * S0),
                              "output": nir.Output(output_type=np.array([8]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")], type_check=False)
    nodes = dict(graph.nodes)
    nodes["lif0"] = sub
    nested = nir.NIRGraph(nodes=nodes, edges=graph.edges, type_check=False)
    via_nir, report = from_nir(nested)
    np.testing.assert_array_equal(via_nir.layers[0].recurrent, loop, err_msg=f"seed {base_seed}")
    assert report.layers[0].name == "affine0 -> lif0.lif"
    state = _snntorch_dict(params, [1 - 2.0 ** -k for *_, k in params], reset_code=1)
    state["lif1.recurrent.weight"] = (loop.T * S0).astype(np.float32)
    assert from_snntorch(state)[0].digest() == via_nir.digest(), f"seed {base_seed}"
    assert from_nir(_write(tmp_path, nested), name="")[0].digest() == via_nir.digest()
    # Any other nested graph is refused, naming it.
    odd = dict(nodes)
    odd["lif0"] = nir.NIRGraph.from_list(_lif(8, 1.0))
    with pytest.raises(ConversionError, match="'lif0'.*not a recurrent layer"):
        from_nir(nir.NIRGraph(nodes=odd, edges=graph.edges, type_check=False))


def test_snntorch_rleaky_recurrent_weights(base_seed):
    """RLeaky: a recurrent Linear (all_to_all) or V (one to one) becomes the layer's recurrent
    weights, on the same scale as its feed-forward weights; the Linear's bias joins the bias."""
    rng = _rng(base_seed, 13)
    _, params = _exact_net(rng, bias=False)
    state = _snntorch_dict(params, [0.875, 0.75])
    loop = rng.integers(-60, 61, size=(8, 8))          # loop[m, n]: from neuron m to neuron n
    state["lif1.recurrent.weight"] = (loop.T * S0).astype(np.float32)
    state["lif1.recurrent.bias"] = (np.arange(8) * S0).astype(np.float32)
    model, report = from_snntorch(state)
    np.testing.assert_array_equal(model.layers[0].recurrent, loop, err_msg=f"seed {base_seed}")
    np.testing.assert_array_equal(model.layers[0].bias, np.arange(8))
    assert model.layers[1].recurrent is None and report.sizes == [20, 8, 4]
    # One to one: V[n] from neuron n to itself.
    one = _snntorch_dict(params, [0.875, 0.75])
    one["lif2.V"] = (np.array([5, -7, 9, 0]) * S0).astype(np.float32)
    model, _ = from_snntorch(one)
    np.testing.assert_array_equal(model.layers[1].recurrent, np.diag([5, -7, 9, 0]))
    # The float reference feeds a layer its own spikes of the step before.
    spikes = _spikes(rng, 6, 3, 20, p=0.5)
    with_loop, _ = from_snntorch(state)
    plain = _snntorch_dict(params, [0.875, 0.75])
    assert not np.array_equal(with_loop.forward(spikes, trace=True).spikes[0],
                              from_snntorch(plain)[0].forward(spikes, trace=True).spikes[0])


def test_nir_report_says_the_reset_mode_was_chosen(base_seed):
    graph, _ = _exact_net(_rng(base_seed, 16))
    _, report = from_nir(graph)
    assert any("NIR cannot record a reset mode" in note and "--reset subtract" in note
               for note in report.notes), report.notes
    _, chosen = from_nir(graph, reset="zero")
    assert not any("cannot record a reset mode" in note for note in chosen.notes)
