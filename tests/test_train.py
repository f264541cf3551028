"""The hardware-exact trainer (firmware/train/): its integer forward pass is the golden model
bit for bit, training is deterministic and learns, bad input is refused; ``spikefab train``."""

import numpy as np
import pytest

from spikefab.firmware.cli import main
from spikefab.firmware.compiler import compile_model
from spikefab.sim.golden_chip import GoldenChip
from spikefab.firmware.mnist import write_idx
from spikefab.firmware.model import Layer, Model
from spikefab.hdl.profiles import get_profile
from spikefab.firmware.train import (TrainConfig, golden_evaluate, integer_forward, shift_images,
                                     split_indices, train)
from spikefab.sim.chip import ChipModel
from spikefab.sim.encoding import rate_encode
from spikefab.sim.golden import CoreModel, decode
from spikefab.hdl.abi import CoreShape, ResetMode

#: The small configuration every test trains with: seconds, not minutes.
SMALL = {"hidden": 16, "steps": 5, "epochs": 3, "qat_epochs": 1, "batch_size": 32, "shift": 1,
         "lr": 1e-2, "qat_lr": 2e-3}


def synthetic(seed: int, count: int = 400, classes: int = 4):
    """``count`` 28x28 "images" with learnable class structure: class ``c`` lights a random
    set of pixels of its own (its prototype), every image adds random background noise and
    drops a random part of the prototype."""
    rng = np.random.default_rng([seed, 0xDA7A])
    prototypes = np.zeros((classes, 784), bool)
    for c in range(classes):
        prototypes[c, rng.choice(784, size=120, replace=False)] = True
    labels = rng.integers(0, classes, size=count)
    keep = rng.random((count, 784)) < 0.8
    images = np.where(prototypes[labels] & keep, rng.integers(150, 256, size=(count, 784)), 0)
    noise = rng.random((count, 784)) < 0.08
    images = np.where(noise, rng.integers(0, 256, size=(count, 784)), images)
    return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def trained():
    """A small trained model and its data (seeded from the base seed)."""
    from conftest import BASE_SEED
    images, labels = synthetic(BASE_SEED)
    train_at, val_at = split_indices(len(images))
    result = train(images[train_at], labels[train_at], config=TrainConfig(**SMALL,
                                                                          seed=BASE_SEED),
                   val_images=images[val_at], val_labels=labels[val_at],
                   indices=train_at, val_indices=val_at, classes=10)
    return result, images, labels


def saturating_model(seed: int) -> Model:
    """A hand-made 784-16-10 model that drives membranes into both saturation limits, leaks
    negative membranes (floor shift) and uses zero reset and biases."""
    rng = np.random.default_rng([seed, 0x5A7])
    w0 = np.where(rng.random((784, 16)) < 0.5, 127, -128)
    w0[:, :4] = 127           # these saturate high
    w0[:, 4:8] = -128         # these saturate low
    w1 = rng.integers(-128, 128, size=(16, 10))
    return Model([Layer(w0, threshold=30000, leak=3, bias=rng.integers(-900, 900, size=16)),
                  Layer(w1, threshold=200, leak=1, reset=ResetMode.ZERO,
                        bias=rng.integers(-50, 50, size=10))], name="saturating")


def core_chain(model: Model, spikes: np.ndarray):
    """The golden model, one :class:`CoreModel` per layer, layer ``l + 1`` one tick behind
    layer ``l``: per layer, its spikes (every tick) and final membranes."""
    steps, batch = spikes.shape[:2]
    ticks = steps + len(model.layers) - 1
    signal = np.zeros((ticks, batch, model.inputs), np.int64)
    signal[:steps] = spikes
    trains, finals = [], []
    for layer in model.layers:
        core = CoreModel(CoreShape(layer.inputs, layer.outputs, w_bits=model.w_bits,
                                   v_bits=model.v_bits),
                         layer.weights, layer.config(), layer.bias, batch=batch)
        fired = core.run(signal)
        trains.append(fired)
        finals.append(core.v.copy())
        signal = np.zeros((ticks, batch, layer.outputs), np.int64)
        signal[1:] = fired[:-1]
    return trains, finals


def assert_matches_golden(model: Model, spikes: np.ndarray, seed: int,
                          profile: str = "icebreaker") -> None:
    trace = integer_forward(model, spikes)
    steps, batch = spikes.shape[:2]
    where = f"(model {model.name!r}, seed {seed})"
    # Model.simulate: the output layer's spikes, drain tick included.
    assert np.array_equal(trace.spikes[-1], model.simulate(spikes)), \
        f"output spikes differ from Model.simulate {where}"
    # CoreModel per layer: every layer's spike train and final membranes.
    trains, finals = core_chain(model, spikes)
    for l in range(len(model.layers)):
        assert np.array_equal(trace.spikes[l], trains[l]), \
            f"layer {l} spikes differ from CoreModel {where}"
        assert np.array_equal(trace.final_v[l], finals[l]), \
            f"layer {l} final membranes differ from CoreModel {where}"
    # The chip model running the compiled image, tick by tick.
    chip = GoldenChip(get_profile(profile).info())
    chip.load(compile_model(model, profile))
    program = chip.program
    order = get_profile(profile).order
    sim = ChipModel(program, batch=batch)
    axons = program.cores[order[0]].shape.axons
    out_tile = order[len(model.layers) - 1]
    out_spikes = np.zeros_like(trace.spikes[-1])
    for t in range(steps + len(model.layers) - 1):
        host = {}
        if t < steps:
            padded = np.zeros((batch, axons), np.int64)
            padded[:, :model.inputs] = spikes[t]
            host = {order[0]: padded}
        for b, events in enumerate(sim.step(host_spikes=host)):
            for x, y, neuron, tick in events:
                assert (x, y) == out_tile and tick == t
                out_spikes[t, b, neuron] = True
    assert np.array_equal(out_spikes, trace.spikes[-1]), \
        f"output spike trains differ from ChipModel {where}"
    for l, layer in enumerate(model.layers):
        v = sim.cores[order[l]].v[:, :layer.outputs]
        assert np.array_equal(v, trace.final_v[l]), \
            f"layer {l} final membranes differ from ChipModel {where}"
    # Hidden spikes of ticks 0 .. T-1 are the events the next core received.
    for l in range(len(model.layers) - 1):
        received = sim.cores[order[l + 1]].counters.events
        assert received == int(trace.spikes[l][:steps].sum()), \
            f"layer {l + 1} received {received} events {where}"
    result = chip.run(spikes)
    assert np.array_equal(result.counts, trace.counts), f"counts differ {where}"
    assert np.array_equal(result.final_v, trace.final_v[-1]), f"final V differs {where}"
    assert np.array_equal(result.predictions, trace.predictions), \
        f"predictions differ {where}"
    assert np.array_equal(trace.predictions, decode(trace.counts, trace.final_v[-1]))


# ---- (a) the integer forward pass is the golden model ------------------------------------------

def test_trained_model_forward_is_golden(trained, base_seed):
    result, images, _ = trained
    model = result.model
    assert model.sizes == [784, 16, 10] and model.steps == 5 and model.w_bits == 8
    spikes = rate_encode(images[:64], 5, base_seed, np.arange(64))
    assert_matches_golden(model, spikes, base_seed)
    trace = integer_forward(model, spikes)
    assert trace.spikes[0].any() and trace.spikes[-1].any(), \
        f"a silent network proves little (seed {base_seed})"


def test_leaky_and_4_bit_forward_is_golden(base_seed):
    images, labels = synthetic(base_seed + 1)
    config = TrainConfig(**{**SMALL, "epochs": 1, "qat_epochs": 1}, leak=2, w_bits=4,
                         seed=base_seed)
    model = train(images, labels, config=config).model
    assert model.w_bits == 4 and all(layer.leak == 2 for layer in model.layers)
    assert max(int(np.abs(layer.weights).max()) for layer in model.layers) <= 8
    spikes = rate_encode(images[:48], 5, base_seed + 7, np.arange(48))
    assert_matches_golden(model, spikes, base_seed)


def test_saturating_model_forward_is_golden(base_seed):
    model = saturating_model(base_seed)
    spikes = (np.random.default_rng([base_seed, 3]).random((12, 20, 784)) < 0.4)
    trace = integer_forward(model, spikes.astype(np.uint8))
    hidden = CoreModel(CoreShape(784, 16), model.layers[0].weights, model.layers[0].config(),
                       model.layers[0].bias, batch=20)
    _, vs = hidden.run(spikes.astype(np.int64), trace=True)
    # Saturated at 32767, a spike leaves 32767 - theta.
    assert (vs == 32767 - 30000).any() and trace.spikes[0].any(), \
        f"the model does not reach the upper limit (seed {base_seed})"
    assert (vs == -32768).any(), f"the model does not reach the lower limit (seed {base_seed})"
    assert_matches_golden(model, spikes.astype(np.uint8), base_seed)


def test_forward_matches_golden_on_the_tiny_profile(base_seed):
    images, labels = synthetic(base_seed + 2)
    small = images.reshape(-1, 28, 28)[:, ::4, ::4].reshape(len(images), 49)   # 7x7 pixels
    model = train(small, labels, config=TrainConfig(hidden=12, steps=4, epochs=1,
                                                    qat_epochs=1, shift=0,
                                                    seed=base_seed), classes=6).model
    spikes = rate_encode(small[:32], 4, base_seed, np.arange(32))
    assert_matches_golden(model, spikes, base_seed, profile="tiny")


def test_two_hidden_layers_train_and_run_on_a_generated_chip(base_seed):
    """--hidden 12,8: a three-layer network, trained integer-exact, equal to Model.forward and
    to the golden chip of a generated chip (the trainer's forward is the chip's)."""
    images, labels = synthetic(base_seed + 3)
    small = images.reshape(-1, 28, 28)[:, ::4, ::4].reshape(len(images), 49)
    model = train(small, labels, config=TrainConfig(hidden=(12, 8), steps=4, epochs=1,
                                                    qat_epochs=1, shift=0,
                                                    seed=base_seed), classes=6).model
    assert model.sizes == [49, 12, 8, 6], f"seed {base_seed}"
    spikes = rate_encode(small[:32], 4, base_seed, np.arange(32))
    assert_trainer_is_the_chip(model, spikes, base_seed)


def assert_trainer_is_the_chip(model: Model, spikes: np.ndarray, seed: int):
    """The trainer's integer forward (every layer's spikes and final membranes) equals
    ``Model.forward``, and the golden chip of the compiled model answers the same counts and
    final membranes; returns ``Model.forward``'s run."""
    trace, run = integer_forward(model, spikes), model.forward(spikes, trace=True)
    for l in range(len(model.layers)):
        assert np.array_equal(trace.spikes[l], run.spikes[l]), f"layer {l}, seed {seed}"
        assert np.array_equal(trace.final_v[l], run.final_v[l]), f"layer {l}, seed {seed}"
    image = compile_model(model)
    chip = GoldenChip(image.info)
    chip.load(image)
    got = chip.run(spikes)
    assert np.array_equal(got.counts, run.counts), f"seed {seed}"
    assert np.array_equal(got.final_v, run.final_v[-1]), f"seed {seed}"
    return run


# ---- the backward pass -------------------------------------------------------------------------

def test_output_layer_gradient_is_the_chain_rule(base_seed):
    """Without leak the output layer's charge (spike count plus final membrane over theta) is
    its summed input, linear in its weights whatever it spikes, so the loss is differentiable
    in them and backpropagation (surrogate and reset terms included) must equal finite
    differences."""
    from spikefab.firmware.train import network, trainer
    images, labels = synthetic(base_seed, count=48)
    spikes = rate_encode(images, 6, base_seed, np.arange(48))
    config = TrainConfig(hidden=12, steps=6, leak=0)
    params = trainer._init_params([784, 12, 10], np.random.default_rng([base_seed, 9]), 2.0)

    def loss_of(params):
        layers = trainer._float_layers(params, config)
        runs = network._forward(layers, spikes)
        return layers, runs, network._loss(layers[-1], runs[-1], labels, 8 / 6)

    layers, runs, (_, g_counts, g_v) = loss_of(params)
    assert runs[0].spikes.any() and runs[1].spikes.any(), f"seed {base_seed}"
    grads = network._backward(layers, runs, g_counts, g_v, 5.0)
    rng = np.random.default_rng([base_seed, 10])
    for i, j in zip(rng.integers(0, 12, 8), rng.integers(0, 10, 8)):
        moved = []
        for sign in (1, -1):
            changed = [[w.copy(), b.copy()] for w, b in params]
            changed[1][0][i, j] += sign * 1e-3
            moved.append(loss_of(changed)[2][0])
        numeric = (moved[0] - moved[1]) / 2e-3
        assert grads[1][0][i, j] == pytest.approx(numeric, rel=1e-2, abs=1e-5), \
            f"dW[{i}, {j}] (seed {base_seed})"


# ---- (b) determinism ---------------------------------------------------------------------------

def test_same_seed_same_model(trained, base_seed, tmp_path):
    result, images, labels = trained
    train_at, val_at = split_indices(len(images))
    again = train(images[train_at], labels[train_at], config=TrainConfig(**SMALL,
                                                                         seed=base_seed),
                  val_images=images[val_at], val_labels=labels[val_at], indices=train_at,
                  val_indices=val_at, classes=10)
    assert again.model.digest() == result.model.digest(), f"seed {base_seed}"
    first, second = result.model.arrays(), again.model.arrays()
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].tobytes() == second[key].tobytes(), f"{key} differs (seed {base_seed})"
    assert [e["loss"] for e in again.history] == [e["loss"] for e in result.history]
    result.model.save(tmp_path / "a.npz")
    assert Model.load(tmp_path / "a.npz").digest() == result.model.digest()
    other = train(images[train_at], labels[train_at],
                  config=TrainConfig(**SMALL, seed=base_seed + 1), classes=10)
    assert other.model.digest() != result.model.digest(), f"seeds {base_seed}, +1"


# ---- (c) it learns -----------------------------------------------------------------------------

def test_training_learns(trained, base_seed):
    result, images, labels = trained
    losses = [e["loss"] for e in result.history]
    assert losses[-1] < losses[0], f"loss did not fall: {losses} (seed {base_seed})"
    assert [e["phase"] for e in result.history] == ["float", "float", "qat"]
    # 4 classes: chance is 25%; the validation images were never trained on.
    assert result.val_accuracy >= 0.6, \
        f"validation accuracy {result.val_accuracy:.2%} (seed {base_seed})"
    _, val_at = split_indices(len(images))
    golden = golden_evaluate(result.model, images[val_at], labels[val_at], val_at, seed=0)
    assert golden["accuracy"] == result.val_accuracy, f"seed {base_seed}"


# ---- (d) bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"w_bits": 6}, "w_bits must be 4 or 8, not 6"),
    ({"w_bits": True}, "w_bits must be 4 or 8"),
    ({"steps": 0}, "steps must be >= 1, not 0"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"hidden": 0}, "hidden must be a positive integer or a tuple of them, not 0"),
    ({"hidden": (16, 0)}, r"hidden must be a positive integer or a tuple of them, not \(16, 0\)"),
    ({"epochs": 0}, "epochs must be >= 1, not 0"),
    ({"qat_epochs": 5, "epochs": 2}, r"qat_epochs must be in \[0, 2\], not 5"),
    ({"leak": 16}, r"leak must be in \[0, 15\], not 16"),
    ({"lr": -1.0}, "lr must be a positive number"),
])
def test_bad_config_is_refused(change, message):
    images, labels = synthetic(1, count=20)
    with pytest.raises(ValueError, match=message):
        train(images, labels, config=TrainConfig(**{**SMALL, **change}))


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros(784, np.uint8), np.zeros(1, int), "must be \\(count, pixels\\)"),
    (np.zeros((10, 784), np.uint8), np.zeros(9, int), "labels must have shape \\(10,\\)"),
    (np.zeros((10, 784), np.uint8), np.zeros((10, 2), int), "labels must have shape"),
    (np.full((10, 784), 300), np.zeros(10, int), "pixels in \\[0, 255\\]"),
    (np.zeros((10, 784), np.float32), np.zeros(10, int), "pixels in \\[0, 255\\]"),
    (np.zeros((10, 784), np.uint8), -np.ones(10, int), "non-negative integers"),
    (np.zeros((0, 784), np.uint8), np.zeros(0, int), "empty"),
])
def test_bad_data_is_refused(images, labels, message):
    with pytest.raises(ValueError, match=message):
        train(images, labels, config=TrainConfig(**SMALL))


def test_bad_validation_data_and_shift_are_refused():
    images, labels = synthetic(2, count=20)
    with pytest.raises(ValueError, match="validation images have 783 pixels"):
        train(images, labels, config=TrainConfig(**SMALL), val_images=images[:, :783],
              val_labels=labels)
    with pytest.raises(ValueError, match="give both"):
        train(images, labels, config=TrainConfig(**SMALL), val_images=images)
    with pytest.raises(ValueError, match="square images"):
        train(images[:, :783], labels, config=TrainConfig(**SMALL))
    with pytest.raises(ValueError, match="below classes=3"):
        train(images, labels, config=TrainConfig(**SMALL), classes=3)
    with pytest.raises(ValueError, match="spikes must have shape"):
        integer_forward(saturating_model(1), np.zeros((5, 2, 700), np.uint8))


# ---- helpers -----------------------------------------------------------------------------------

def test_shift_images_moves_pixels():
    image = np.zeros((1, 784), np.uint8)
    image[0, 10 * 28 + 12] = 200
    moved = shift_images(np.repeat(image, 3, 0), np.array([2, -1, 0]), np.array([0, 1, -2]))
    assert moved[0].reshape(28, 28)[10, 14] == 200
    assert moved[1].reshape(28, 28)[11, 11] == 200
    assert moved[2].reshape(28, 28)[8, 12] == 200
    assert (moved > 0).sum() == 3


def test_split_keeps_the_bundled_slice_out_of_training():
    train_at, val_at = split_indices(60000)
    assert train_at[-1] == 54999 and val_at[0] == 55000 and val_at[-1] == 59999
    train_at, val_at = split_indices(240)
    assert len(val_at) == 20 and train_at[-1] + 1 == val_at[0]


# ---- the command -------------------------------------------------------------------------------

def test_train_command(base_seed, tmp_path, capsys):
    images, labels = synthetic(base_seed, count=240)
    data = tmp_path / "mnist"
    data.mkdir()
    write_idx(data / "train-images-idx3-ubyte.gz", images.reshape(-1, 28, 28))
    write_idx(data / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    out = tmp_path / "m.npz"
    assert main(["train", "--data", str(data), "--hidden", "16", "--steps", "5", "--epochs",
                 "2", "--seed", str(base_seed), "--batch-size", "32", "--recurrent", "-o",
                 str(out)]) == 0
    text = capsys.readouterr().out
    model = Model.load(out)
    assert model.sizes == [784, 16, 10] and model.steps == 5, f"seed {base_seed}"
    assert model.layers[0].recurrent.shape == (16, 16) and model.layers[1].recurrent is None
    assert "validation accuracy" in text and "golden" in text and "training time" in text
    assert f"wrote {out}" in text


@pytest.mark.parametrize("argv, message", [
    (["--w-bits", "5"], "invalid choice: 5"),
    (["--weight-bits", "5"], "invalid choice: 5"),
    (["--hidden", "16,0"], "a comma-separated list of them (e.g. 256,128), not '16,0'"),
    (["--hidden", "big"], "must be a positive integer or a comma-separated list"),
    (["--steps", "0"], "expected a positive integer, got 0"),
])
def test_train_command_usage_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(tmp_path), "-o", str(tmp_path / "m.npz"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_train_command_without_data(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "-o",
                 str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err
    assert "spikefab train: error:" in err and "does not exist" in err
    assert "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()
