"""The mapper and generated chips on the golden chip model: a network split over many cores,
three layers, recurrent layers, all equal to the network simulator (``Model.forward``) in every
output spike, count, final membrane and prediction; the images they compile to; fit errors."""

import re
from dataclasses import replace

import numpy as np
import pytest
from amaranth.back import rtlil

from spikefab.firmware.compiler import CompileError, compile_for, compile_model
from spikefab.firmware.image import ChipImage, ImageError
from spikefab.firmware.mapper import MapError, generate_mapping
from spikefab.firmware.model import Model, ModelError, random_model
from spikefab.hdl.abi import AXON_LIMIT, NEURON_LIMIT
from spikefab.hdl.profiles import ChipProfile
from spikefab.sim.golden_chip import GoldenChip


def _spikes(seed: int, steps: int, images: int, inputs: int, rate: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, images, inputs)) < rate).astype(np.uint8)


def _golden_equals_forward(model: Model, image: ChipImage, seed: int, *, images: int = 6,
                           steps: int = 12) -> None:
    """The golden chip running ``image`` answers exactly what ``model.forward`` computes."""
    spikes = _spikes(seed, steps, images, model.inputs)
    want = model.forward(spikes)
    chip = GoldenChip(image.info)
    chip.load(image)
    got = chip.run(spikes)
    assert want.counts.sum() > 0, f"seed {seed}: the network never answered"
    np.testing.assert_array_equal(got.counts, want.counts, err_msg=f"seed {seed}")
    np.testing.assert_array_equal(got.final_v, want.final_v[-1], err_msg=f"seed {seed}")
    np.testing.assert_array_equal(got.predictions, want.predictions, err_msg=f"seed {seed}")
    # Every output event at its tick: class c spiking in tick t of the run.
    last = want.spikes[-1]
    for b in range(images):
        events = sorted(_class_events(image, got.outputs[b]))
        expected = sorted((t, c) for t, c in zip(*np.nonzero(last[:, b])))
        assert events == expected, f"seed {seed}, image {b}"


def _class_events(image: ChipImage, outputs):
    for x, y, n, tick in outputs:
        for o in image.outputs:
            if o.tile == (x, y) and n < o.count:
                yield tick, o.first + n


def test_a_wide_layer_splits_over_four_cores(base_seed):
    model = random_model([30, 1000, 10], seed=base_seed, density=0.3)
    image = compile_model(model)
    hidden = [p for p in image.meta["placement"] if p["layer"] == 0]
    assert [p["outputs"] for p in hidden] == [250] * 4
    assert [p["first"] for p in hidden] == [0, 250, 500, 750]
    assert len(image.input_tiles) == 4 and len(image.outputs) == 1
    chip = image.chip_profile()
    assert chip.cols * chip.rows >= 5 and all(t.shape.neurons <= NEURON_LIMIT
                                              for t in chip.tiles.values())
    _golden_equals_forward(model, image, base_seed)


def test_three_layers_each_split(base_seed):
    model = random_model([24, 40, 30, 12], seed=base_seed + 1, density=0.4)
    image = compile_model(model, generate_mapping(model, neurons_per_core=8))
    per_layer = [sum(1 for p in image.meta["placement"] if p["layer"] == l) for l in range(3)]
    assert per_layer == [5, 4, 2]
    assert len(image.outputs) == 2 and image.drain_ticks == 2
    _golden_equals_forward(model, image, base_seed)


@pytest.mark.parametrize("recurrent", [[True, False], [False, True], [True, True]])
def test_recurrent_layers(base_seed, recurrent):
    model = random_model([20, 24, 8], seed=base_seed + 2, density=0.4, recurrent=recurrent)
    image = compile_model(model, generate_mapping(model, neurons_per_core=10))
    for p in image.meta["placement"]:
        layer = model.layers[p["layer"]]
        assert p["axons_used"] == layer.inputs + (layer.outputs if recurrent[p["layer"]] else 0)
    _golden_equals_forward(model, image, base_seed)
    # The recurrent weights matter: without them the answer differs.
    plain = Model([type(layer)(layer.weights, layer.threshold, layer.leak, layer.reset,
                               layer.bias) for layer in model.layers])
    spikes = _spikes(base_seed, 12, 6, model.inputs)
    assert not np.array_equal(plain.forward(spikes, trace=True).spikes[recurrent.index(True)],
                              model.forward(spikes, trace=True).spikes[recurrent.index(True)])


def test_forward_is_the_chip_pipeline_by_hand(base_seed):
    """Model.forward against a tick-by-tick loop written out for a 2-layer recurrent net."""
    model = random_model([6, 5, 3], seed=base_seed, recurrent=[True, True], density=0.6)
    spikes = _spikes(base_seed, 9, 2, 6, rate=0.5)
    got = model.forward(spikes, trace=True)
    l0, l1 = model.layers
    v = [np.zeros((2, 5), np.int64), np.zeros((2, 3), np.int64)]
    s = [np.zeros((2, 5), np.int64), np.zeros((2, 3), np.int64)]
    for t in range(9 + 1):
        x = spikes[t] if t < 9 else np.zeros((2, 6), np.int64)
        i0 = x.astype(np.int64) @ l0.weights + s[0] @ l0.recurrent
        i1 = s[0] @ l1.weights + s[1] @ l1.recurrent
        new = []
        for k, (layer, i) in enumerate(((l0, i0), (l1, i1))):
            vk = v[k] + i   # no leak, no bias: random_model's defaults
            vk = np.clip(vk, -(1 << 15), (1 << 15) - 1)
            fired = vk >= layer.threshold
            v[k] = vk - fired * layer.threshold
            new.append(fired.astype(np.int64))
        s = new
        np.testing.assert_array_equal(got.spikes[0][t], s[0], err_msg=f"tick {t}")
        np.testing.assert_array_equal(got.spikes[1][t], s[1], err_msg=f"tick {t}")


def test_model_files_keep_recurrent_weights(tmp_path, base_seed):
    model = random_model([10, 6, 4], seed=base_seed, recurrent=[True, False])
    model.save(tmp_path / "r.npz")
    again = Model.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(again.layers[0].recurrent, model.layers[0].recurrent)
    assert again.layers[1].recurrent is None and again.digest() == model.digest()
    arrays = model.arrays()
    arrays["recurrent_1"] = np.zeros((4, 5), np.int8)
    with pytest.raises(ModelError, match=r"recurrent_1 has shape \(4, 5\); layer 1 has 4 "
                                         r"outputs, so it must be \(4, 4\)"):
        Model.from_arrays(arrays)
    arrays["recurrent_1"] = np.full((4, 4), 200, np.int16)
    with pytest.raises(ModelError, match="recurrent_1 holds values in"):
        Model.from_arrays(arrays)


def test_images_of_generated_chips_round_trip(tmp_path, base_seed):
    model = random_model([20, 24, 8], seed=base_seed, recurrent=[True, False])
    image = compile_model(model, generate_mapping(model, neurons_per_core=10))
    image.save(tmp_path / "g.img")
    again = ChipImage.load(tmp_path / "g.img")
    assert again == image
    assert again.chip_profile() == ChipProfile.from_dict(image.chip)
    assert again.chip_profile().info() == image.info
    # A description that disagrees with the info is refused.
    image.chip = dict(image.chip, output_depth=image.chip["output_depth"] + 1)
    with pytest.raises(ImageError, match="chip description and its chip info disagree"):
        image.validate()
    image.chip = {k: v for k, v in again.chip.items() if k != "tiles"}
    with pytest.raises(ImageError, match="chip description is invalid: a chip description "
                                         "without 'tiles'"):
        image.validate()


def test_the_default_chip_is_icebreaker_when_the_model_fits(base_seed):
    small = random_model([784, 128, 10], seed=base_seed)
    assert compile_for(small).profile == "icebreaker"
    wide = random_model([784, 256, 10], seed=base_seed)
    image = compile_for(wide)
    assert image.profile.startswith("generated-784-256-10")
    assert compile_for(small, "generated").profile.startswith("generated-784-128-10")
    with pytest.raises(CompileError, match="needs 256 neurons, core \\(0,0\\) of profile "
                                           "'icebreaker' has 128"):
        compile_for(wide, "icebreaker")


def test_networks_that_fit_no_chip_say_what_is_over(base_seed):
    rng = np.random.default_rng(base_seed)
    wide_input = Model([_layer(rng, AXON_LIMIT + 10, 4)])
    with pytest.raises(CompileError, match=f"layer 0 needs {AXON_LIMIT + 10} axons per core "
                                           f"\\({AXON_LIMIT + 10} inputs\\); a core has at most "
                                           f"{AXON_LIMIT} \\(10 too many\\)"):
        compile_model(wide_input)
    recurrent = Model([_layer(rng, 900, 200, recurrent=True)])
    with pytest.raises(CompileError, match="layer 0 needs 1100 axons per core \\(900 inputs \\+ "
                                           "200 recurrent\\)"):
        compile_model(recurrent)
    huge = Model([_layer(rng, 10, 70 * NEURON_LIMIT)])
    with pytest.raises(CompileError, match=f"needs 70 cores of at most {NEURON_LIMIT} neurons; "
                                           f"a chip has at most 64 \\(6 too many\\)"):
        compile_model(huge)
    fanout = Model([_layer(rng, 10, 1024), _layer(rng, 1024, 1100)])
    with pytest.raises(CompileError, match=r"layer 0: a core's 256 neurons need 1280 route "
                                           r"destinations \(5 cores to reach\); a route table "
                                           r"holds at most 1024 \(256 too many\)"):
        compile_model(fanout)
    with pytest.raises(ValueError, match="neurons_per_core must be in"):
        generate_mapping(random_model([4, 3], seed=1), neurons_per_core=0)
    assert issubclass(MapError, ValueError)


def _layer(rng, inputs: int, outputs: int, *, recurrent: bool = False):
    from spikefab.firmware.model import Layer
    return Layer(rng.integers(-3, 4, size=(inputs, outputs)), threshold=20,
                 recurrent=rng.integers(-3, 4, size=(outputs, outputs)) if recurrent else None)


# ---- chips generated for a board ----

def test_block_ram_estimate_matches_the_presets_builds():
    """The estimate against what Yosys mapped in the last builds of the two presets (BENCHMARKS:
    28 EBR on the iCEBreaker, 72 DP16KD on the ULX3S, its link's request queue among them)."""
    from spikefab.hdl.profiles import BOARD_CHIPS, PROFILES
    assert BOARD_CHIPS["icebreaker"].blocks(PROFILES["icebreaker"]) == 28
    assert BOARD_CHIPS["ulx3s-85f"].blocks(PROFILES["ulx3s"]) == 72


def test_a_board_chip_has_the_boards_cores(base_seed):
    model = random_model([784, 128, 10], seed=base_seed)
    image = compile_for(model, board="icebreaker")
    chip = image.chip_profile()
    assert chip.board == "icebreaker" and chip.dsp_counters and chip.router_fifo_depth == 0
    first, last = chip.tiles[0, 0], chip.tiles[1, 0]
    assert (first.memory.value, first.lanes, last.memory.value, last.lanes) == \
        ("spram", 8, "block", 1)
    assert image.profile == "icebreaker-784-128-10-w8"
    _golden_equals_forward(model, image, base_seed)
    ulx3s = compile_for(random_model([784, 500, 10], seed=base_seed, w_bits=4),
                        board="ulx3s-85f").chip_profile()
    used = [c for c in ulx3s.tiles.values() if c.shape.neurons > 1]   # idle tiles: 1 x 1
    assert ulx3s.board == "ulx3s-85f" and len(used) == 3
    assert all(c.register_reads and c.lanes == 16 for c in used)
    assert not any(c.lut_ram for c in ulx3s.tiles.values())
    with pytest.raises(CompileError, match="give a board .* or a profile, not both"):
        compile_for(model, "icebreaker", board="icebreaker")


def test_short_of_block_ram_the_small_memories_go_to_lut_ram(base_seed):
    """784-1000-10 at 4 bits: four cores of 250 neurons need 227 block RAMs with every memory
    in block RAM; with the small memories (V, B, I, route tables, egress queue) in LUT RAM,
    207 of the ECP5-85F's 208 (the gateware marks exactly those memories)."""
    from spikefab.hdl.profiles import BOARD_CHIPS
    from spikefab.hdl.chip_tile import ChipTile
    from spikefab.hdl.core import LIFCore
    from spikefab.hdl.abi import LUT_RAM
    style = BOARD_CHIPS["ulx3s-85f"]
    chip = compile_for(random_model([784, 1000, 10], seed=base_seed, w_bits=4),
                       board="ulx3s-85f").chip_profile()
    assert all(c.lut_ram for c in chip.tiles.values()) and style.blocks(chip) == 207
    assert style.blocks(replace(chip, tiles={t: replace(c, lut_ram=False)
                                             for t, c in chip.tiles.items()})) == 227
    assert ChipProfile.from_dict(chip.to_dict()) == chip
    # The memories of one tile as yosys will see them.
    config = chip.tiles[0, 0]
    core = LIFCore(config.shape, lanes=config.lanes, memory=config.memory, register_reads=True,
                   lut_ram=True)
    tile = ChipTile(x=0, y=0, core=core, destinations=config.destinations,
                    domain="sync", clocking="single", registered_reads=True, lut_ram=True)
    text = rtlil.convert(tile)
    memories = re.findall(r'((?:  attribute .*\n)*)  memory width (\d+) size (\d+) \\(\S+)', text)
    lut = {(name, int(size)) for attrs, _, size, name in memories
           if f'ram_style "{LUT_RAM["ram_style"]}"' in attrs}
    rows = -(-250 // config.lanes)
    assert lut == {("membrane", 250), ("bias", 250), ("accumulator", rows), ("index", 250),
                   ("dests", config.destinations),
                   ("storage", ChipTile.egress_depth(250) - 1)}, lut
    banks = {(name, int(size)) for attrs, _, size, name in memories if name.startswith("memory")}
    assert banks == {("memory0", 4096), ("memory1", 4096), ("memory2", 4096),
                     ("memory3", 256)}, banks


def test_a_network_too_big_for_a_board_says_what_would_fit(base_seed):
    wide = random_model([784, 1000, 10], seed=base_seed, w_bits=8)
    with pytest.raises(CompileError) as info:
        compile_for(wide, board="ulx3s-85f")
    text = str(info.value)
    assert "about 387 block RAMs; the ulx3s-85f has 208 (179 too many)" in text, text
    assert ("what would fit: 4-bit weights (--weight-bits 4); at most 528 hidden neurons "
            "(784-528-10)") in text, text
    with pytest.raises(CompileError) as info:
        compile_for(random_model([784, 300, 10], seed=base_seed), board="icebreaker")
    text = str(info.value)
    assert "3 cores; the icebreaker's logic holds 2 (1 too many)" in text, text
    assert "4-bit weights" not in text and "the ulx3s-85f" in text, text
    with pytest.raises(CompileError, match="what would fit: 4-bit weights"):
        compile_for(random_model([784, 256, 10], seed=base_seed), board="icebreaker")


def test_a_chip_for_one_board_is_refused_by_the_other(base_seed):
    from spikefab.boards.top import board_top
    image = compile_for(random_model([784, 128, 10], seed=base_seed), board="icebreaker")
    with pytest.raises(ValueError, match="generated for the icebreaker, not the ulx3s-85f: "
                                         "compile the model with --board ulx3s-85f"):
        board_top("ulx3s-85f", profile=image.chip_profile())
    assert board_top("icebreaker", profile=image.chip_profile()).profile.name == image.profile


# ---- the commands ----

def test_compile_and_build_commands_for_a_board(tmp_path, capsys, monkeypatch, base_seed):
    """compile --board writes an image of a chip for that board; build --model takes that chip
    (the build itself stands in: the bitstreams are .ci/run's); the wrong board, a file that
    is not an image, and --model with --profile are one-line errors before any work."""
    from spikefab.boards import build
    from spikefab.firmware.cli import main
    model_path, image_path = tmp_path / "m.npz", tmp_path / "m.img"
    random_model([784, 128, 10], seed=base_seed).save(model_path)
    assert main(["compile", str(model_path), "--board", "icebreaker", "-o", str(image_path)]) == 0
    assert "on chip 'icebreaker-784-128-10-w8'" in capsys.readouterr().out
    built = []

    def stand_in(board, *, profile=None, **kwargs):
        built.append((board, profile))
        raise build.SynthesisError("stand-in: nothing built")

    monkeypatch.setattr(build, "build_board", stand_in)
    argv = ["build", "--board", "icebreaker", "--model", str(image_path),
            "--build-dir", str(tmp_path / "b")]
    assert main(argv) == 1 and "stand-in: nothing built" in capsys.readouterr().err
    # The image names its board: --board may be left out.
    assert main(argv[:1] + argv[3:]) == 1 and "stand-in" in capsys.readouterr().err
    for board, chip in built:
        assert board == "icebreaker" and chip == ChipImage.load(image_path).chip_profile()
    preset_path = tmp_path / "preset.img"
    assert main(["compile", str(model_path), "--profile", "icebreaker", "-o",
                 str(preset_path)]) == 0
    capsys.readouterr()
    for argv, message in [
        (["build", "--model", str(preset_path)], "which board? give --board"),
        (["build"], "which board? give --board"),
        (["build", "--board", "ulx3s-85f", "--model", str(image_path)],
         "holds a chip generated for the icebreaker, not the ulx3s-85f"),
        (["build", "--board", "icebreaker", "--model", str(model_path)],
         "not a spikefab chip image"),
        (["build", "--board", "icebreaker", "--model", str(image_path), "--profile",
          "icebreaker"], "give --model or --profile, not both"),
        (["compile", str(model_path), "--board", "icebreaker", "--profile", "icebreaker",
          "-o", str(image_path)], "give a board (a chip generated for it) or a profile"),
    ]:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert len(built) == 2


def test_a_pytorch_or_nir_file_given_as_a_model_says_to_import_it(tmp_path, capsys):
    from spikefab.firmware.cli import main
    for name in ("net.pt", "net.pth", "net.nir"):
        path = tmp_path / name
        path.write_bytes(b"PK\x03\x04 not a model")
        with pytest.raises(ModelError, match=f"convert it first with spikefab import {path}"):
            Model.load(path)
        assert main(["run", "--model", str(path), "--count", "1"]) == 1
        err = capsys.readouterr().err
        assert f"spikefab import {path} -o model.npz" in err and "Traceback" not in err, err


def test_demo_takes_an_images_chip_and_refuses_a_board_for_it(tmp_path, capsys, base_seed):
    """demo --model IMAGE simulates the image's own chip (no --profile needed); a board or
    another profile for an image, compiled already, is a one-line error before any build."""
    from spikefab.firmware.cli import main
    from spikefab.firmware.run import load_network
    model_path, image_path = tmp_path / "m.npz", tmp_path / "m.img"
    random_model([784, 300, 10], seed=base_seed, w_bits=4).save(model_path)
    assert main(["compile", str(model_path), "--board", "ulx3s-85f", "-o", str(image_path)]) == 0
    capsys.readouterr()
    image, _ = load_network(str(image_path), profile=None, seed=0)
    assert image.chip_profile().board == "ulx3s-85f"
    for argv, message in [
        (["demo", "--model", str(image_path), "--board", "icebreaker"],
         "is an image, compiled already: leave out --board"),
        (["demo", "--model", str(image_path), "--profile", "icebreaker"],
         "not 'icebreaker': leave out --profile"),
    ]:
        assert main(argv) == 1, argv
        out, err = capsys.readouterr()
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert "RTL simulation" not in out, out
