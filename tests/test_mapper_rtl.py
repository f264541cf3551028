"""A generated chip's RTL (Verilator, through the host link) against the golden chip model and
the network simulator: a three-layer network whose first layer is split over four cores and
whose second layer is recurrent and split over two, on a 3 x 3 mesh with two idle cores."""

import numpy as np

from spikefab.firmware.compiler import compile_model
from spikefab.firmware.mapper import generate_mapping
from spikefab.firmware.model import random_model
from spikefab.firmware.targets import open_chip
from spikefab.sim.golden_chip import GoldenChip

from conftest import record_checked


def test_generated_chip_rtl_equals_golden(base_seed):
    seed = base_seed + 19
    model = random_model([20, 32, 16, 6], seed=seed, density=0.4, recurrent=[False, True, False])
    mapping = generate_mapping(model, neurons_per_core=8)
    per_layer = [len(mapping.of_layer(l)) for l in range(3)]
    assert per_layer == [4, 2, 1], per_layer
    image = compile_model(model, mapping)
    rng = np.random.default_rng(seed)
    spikes = (rng.random((10, 3, model.inputs)) < 0.3).astype(np.uint8)
    want = model.forward(spikes)
    golden = GoldenChip(image.info)
    golden.load(image)
    g = golden.run(spikes)
    assert want.counts.sum() > 0, f"seed {seed}: the network never answered"
    with open_chip("sim", profile=image.chip_profile()) as chip:
        chip.load(image)
        sim = chip.run(spikes)
        status = chip.status()
    for name, a, b in (("golden", g, None), ("sim", sim, g)):
        np.testing.assert_array_equal(a.counts, want.counts, err_msg=f"{name}, seed {seed}")
        np.testing.assert_array_equal(a.final_v, want.final_v[-1], err_msg=f"{name}, seed {seed}")
        np.testing.assert_array_equal(a.predictions, want.predictions,
                                      err_msg=f"{name}, seed {seed}")
        if b is not None:
            assert a.sops == b.sops, (seed, a.sops, b.sops)
            for k, (x, y) in enumerate(zip(a.outputs, b.outputs)):
                assert sorted(x) == sorted(y), (seed, k)
    assert status.naks == 0 and status.mesh_drops == 0 and status.output_drops == 0
    record_checked("mapper-sim", driver_images=spikes.shape[1],
                   driver_output_events=int(want.counts.sum()))


def test_mnist_wide_on_the_ulx3s_chip_rtl_equals_golden(capsys):
    """The shipped 784-1000-10 model on the chip generated for the ULX3S (layer 1 over four
    cores of 250, a 3 x 2 mesh): through the RTL's host link, every output spike, final
    membrane and synaptic op equal to the golden chip's."""
    from spikefab.firmware.cli import main
    assert main(["demo", "--model", "mnist-wide", "--board", "ulx3s-85f", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert "ulx3s-85f-784-1000-10-w4 chip (784-1000-10" in out, out
    assert "RTL (Verilator) == golden model: all" in out, out
