"""Training recurrent hidden layers (``spikefab train --recurrent``): the trainer's forward is
the network simulator's and the golden chip's, bit for bit, and its backward pass gives the
recurrent weights the gradient of an input."""

import numpy as np

from spikefab.firmware.train import TrainConfig, network, train, trainer
from spikefab.sim.encoding import rate_encode

from test_train import assert_trainer_is_the_chip, synthetic


def test_a_recurrent_network_trains_and_equals_the_golden_chip(base_seed):
    images, labels = synthetic(base_seed + 5)
    small = images.reshape(-1, 28, 28)[:, ::4, ::4].reshape(len(images), 49)
    result = train(small, labels, config=TrainConfig(hidden=12, recurrent=True, steps=5,
                                                     epochs=2, qat_epochs=1, shift=0,
                                                     seed=base_seed), classes=4)
    model = result.model
    hidden, out = model.layers
    assert hidden.recurrent is not None and hidden.recurrent.shape == (12, 12), base_seed
    assert out.recurrent is None and np.count_nonzero(hidden.recurrent), base_seed
    spikes = rate_encode(small[:40], 5, base_seed, np.arange(40))
    run = assert_trainer_is_the_chip(model, spikes, base_seed)
    assert run.spikes[0].any(), f"seed {base_seed}: the hidden layer never spiked"


def test_recurrent_weights_get_the_gradient_of_an_input(base_seed):
    """With its recurrent weights at zero a layer runs as a feed-forward layer whose inputs are
    ``x`` and its own spikes of the tick before (weights ``[W; 0]``): the same spikes, and the
    same gradients for W, B and those extra input rows, for every layer of a 2-layer net (the
    hidden layer's through the output layer's backward pass)."""
    rng = np.random.default_rng([base_seed, 0x7EC])
    images, labels = synthetic(base_seed, count=32)
    x = rate_encode(images, 6, base_seed, np.arange(32)).astype(np.float32)
    config = TrainConfig(hidden=12, steps=6, leak=1)
    params = trainer._init_params([784, 12, 10], rng, 2.0, recurrent=(0, 1))
    for layer in params:
        layer[2][:] = 0
    layers = trainer._float_layers(params, config)
    runs = network._forward(layers, x)
    _, g_counts, g_v = network._loss(layers[-1], runs[-1], labels, 8 / 6)
    grads = network._backward(layers, runs, g_counts, g_v, 5.0)
    assert runs[0].spikes.any() and runs[1].spikes.any(), f"seed {base_seed}"
    for l in range(2):
        # The feed-forward stand-in of layer l, fed its own delayed spikes as extra inputs.
        own = np.zeros_like(runs[l].spikes, dtype=np.float32)
        own[1:] = runs[l].spikes[:-1]
        inputs = np.concatenate([runs[l].inputs, own], axis=2)
        plain = [network._Layer(layer.weights, layer.bias, layer.theta, layer.leak)
                 for layer in layers]
        plain[l] = network._Layer(np.concatenate([layers[l].weights, layers[l].recurrent]),
                                  layers[l].bias, layers[l].theta, layers[l].leak)
        stand_in = list(runs)
        stand_in[l] = network._Run(inputs, runs[l].potential, runs[l].in_range,
                                   runs[l].spikes, runs[l].final_v)
        # Layers after l keep their own widths; the stand-in's extra inputs' gradient goes
        # nowhere (it starts the backward pass, or is the output layer run alone).
        first = l if l == len(layers) - 1 else 0
        want = [None] * first + network._backward(plain[first:], stand_in[first:], g_counts,
                                                  g_v, 5.0)
        n_in = layers[l].weights.shape[0]
        got_w, got_b, got_r = grads[l]
        np.testing.assert_allclose(got_w, want[l][0][:n_in], rtol=1e-5, atol=1e-7,
                                   err_msg=f"layer {l}, seed {base_seed}")
        np.testing.assert_allclose(got_r, want[l][0][n_in:], rtol=1e-5, atol=1e-7,
                                   err_msg=f"layer {l}, seed {base_seed}")
        np.testing.assert_allclose(got_b, want[l][1], rtol=1e-5, atol=1e-7,
                                   err_msg=f"layer {l}, seed {base_seed}")
        assert np.abs(got_r).max() > 0, f"layer {l}, seed {base_seed}"
