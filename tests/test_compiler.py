"""The network compiler: model files, chip images, placement, and an image loaded through the
host link running exactly the model."""

import hashlib
import struct

import numpy as np
import pytest

from spikefab.firmware.cli import main
from spikefab.firmware.compiler import CompileError, compile_model, route_dest, route_entry
from spikefab.hdl.abi import (MAX_OUTPUTS, MAX_PAYLOAD, Command, CoreShape, MemoryStyle, Region,
                              ResetMode, RouteDest, RouteEntry, Status, pack_event_word,
                              unpack_route_dest, unpack_route_entry)
from spikefab.firmware.image import (IMAGE_VERSION, MAGIC, ChipImage, ImageError, MemoryWrite,
                                     OutputSlice,
                                     max_record_words)
from spikefab.firmware.model import Layer, Model, ModelError, random_model
from spikefab.hdl.profiles import PROFILES, ChipProfile, get_profile
from spikefab.firmware.protocol import SlipDecoder, frame, parse_body, unpack_outputs
from spikefab.hdl.chip import TileConfig
from spikefab.sim.chip import ChipModel
from spikefab.sim.golden import CoreModel
from spikefab.sim.link_model import LinkModel


# ---- profiles ----

def test_profiles_describe_their_chips():
    ice = get_profile("icebreaker").info()
    assert (ice.cols, ice.rows, ice.host) == (2, 1, (0, 0))
    first, second = ice.tiles
    assert (first.axons, first.neurons, first.w_bits, first.v_bits, first.lanes) == \
        (1024, 128, 8, 16, 8)
    assert first.regions[Region.SYNAPSE] * first.lanes * first.w_bits == 1024 * 1024  # 1 Mbit
    assert (second.axons, second.neurons, second.lanes) == (128, 10, 1)
    assert first.regions[Region.ROUTE_DEST] == 128 and second.regions[Region.ROUTE_DEST] == 16
    assert PROFILES["icebreaker"].tiles[0, 0].memory == MemoryStyle.SPRAM
    tiny = get_profile("tiny").info()
    assert [(t.axons, t.neurons, t.lanes) for t in tiny.tiles] == [(64, 16, 4), (16, 8, 4)]
    ulx = get_profile("ulx3s").info()
    assert [(t.axons, t.neurons, t.lanes) for t in ulx.tiles] == [(1024, 128, 16), (128, 16, 16)]
    assert all(t.register_reads and t.memory == MemoryStyle.BLOCK
               for t in PROFILES["ulx3s"].tiles.values())
    with pytest.raises(ValueError, match="unknown chip profile 'ecp5'; known: "
                                         "icebreaker, tiny, ulx3s"):
        get_profile("ecp5")


# ---- models ----

def _layer_spikes(model, inputs):
    """Each layer's spikes, ``(T, batch, outputs)``, for ``inputs`` fed to it without lag."""
    signal, out = inputs.astype(np.int64), []
    for layer in model.layers:
        core = CoreModel(CoreShape(layer.inputs, layer.outputs, model.w_bits, model.v_bits),
                         layer.weights, layer.config(), layer.bias, batch=inputs.shape[1])
        spikes = core.run(signal)
        out.append(spikes)
        signal = spikes.astype(np.int64)
    return out


@pytest.mark.parametrize("sizes, w_bits", [((40, 12, 6), 8), ((64, 16, 8), 8),
                                           ((784, 128, 10), 8), ((30, 20, 10, 5), 4)])
def test_random_models_spike_under_rate_coded_input(base_seed, sizes, w_bits):
    seed = base_seed + sum(sizes)
    model = random_model(sizes, seed=seed, w_bits=w_bits)
    inputs = np.random.default_rng(seed).random((30, 4, sizes[0])) < 0.5
    for l, spikes in enumerate(_layer_spikes(model, inputs)):
        fired = spikes.any(axis=(0, 1)).mean()
        rate = spikes.mean()
        assert fired >= 0.5 and 0.05 <= rate <= 0.95, \
            f"seed {seed}: layer {l} of {sizes}: {fired:.0%} of neurons fired, rate {rate:.2f}"
    assert random_model(sizes, seed=seed, w_bits=w_bits).digest() == model.digest()


def test_model_round_trip(tmp_path, base_seed):
    model = random_model((20, 10, 5), seed=base_seed, bias=True, leak=[1, 0],
                         reset=["zero", "subtract"], steps=12, name="round trip")
    path = tmp_path / "m.npz"
    model.save(path)
    again = Model.load(path)
    assert (again.w_bits, again.v_bits, again.steps, again.name) == (8, 16, 12, "round trip")
    assert again.sizes == [20, 10, 5] and again.digest() == model.digest()
    for a, b in zip(model.layers, again.layers):
        assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
        assert (a.threshold, a.leak, a.reset) == (b.threshold, b.leak, b.reset)
    assert again.layers[0].reset is ResetMode.ZERO
    # Optional keys may be absent; reset may be given as the register's 0 / 1.
    arrays = model.arrays()
    for key in ("bias_0", "bias_1", "steps", "name"):
        del arrays[key]
    arrays["reset_0"] = np.array(1)
    np.savez(path, **arrays)
    minimal = Model.load(path)
    assert minimal.layers[0].bias is None and minimal.steps is None and minimal.name == ""
    assert minimal.layers[0].reset is ResetMode.ZERO


def _model_arrays(base_seed):
    return random_model((20, 10, 5), seed=base_seed, bias=True).arrays()


def _edit(arrays, **changes):
    arrays = dict(arrays)
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


@pytest.mark.parametrize("change, message", [
    (lambda a: _edit(a, threshold_1=None), r"missing key 'threshold_1'"),
    (lambda a: _edit(a, format=None), r"missing key 'format'"),
    (lambda a: _edit(a, layers=None), r"missing key 'layers'"),
    (lambda a: _edit(a, weights_1=np.ones((7, 5), np.int8), bias_1=None),
     r"weights_1 has 7 inputs but layer 0 has 10 outputs"),
    (lambda a: _edit(a, weights_0=np.where(np.eye(20, 10, dtype=bool), 200, -3)
                     .astype(np.int16)),
     r"weights_0 holds values in \[-3, 200\], outside the signed 8-bit range \[-128, 127\]"),
    (lambda a: _edit(a, weights_0=a["weights_0"].astype(np.float32)),
     r"weights_0 must hold integers \(quantized weights\), not float32"),
    (lambda a: _edit(a, weights_0=np.ones(20, np.int8)), r"weights_0 must be a 2-D array"),
    (lambda a: _edit(a, bias_0=np.full(10, 40000, np.int32)),
     r"bias_0 holds values in \[40000, 40000\], outside the signed 16-bit range"),
    (lambda a: _edit(a, bias_1=np.zeros(4, np.int32)), r"bias_1 has 4 values but layer 1 has 5"),
    (lambda a: _edit(a, threshold_0=np.array(0)), r"threshold_0 must be in \[1, 32767\], not 0"),
    (lambda a: _edit(a, threshold_0=np.array(2.5)), r"threshold_0 must be an integer"),
    (lambda a: _edit(a, leak_1=np.array(16)), r"leak_1 must be in \[0, 15\], not 16"),
    (lambda a: _edit(a, reset_0=np.array("hold")), r"reset_0 must be 'subtract' or 'zero'"),
    (lambda a: _edit(a, w_bits=np.array(6)), r"w_bits must be 4 or 8, not 6"),
    (lambda a: _edit(a, version=np.array(2)), r"version is 2; this spikefab reads model format "
                                              r"version 1"),
    (lambda a: _edit(a, format=np.array("keras")), r"not a spikefab model"),
    (lambda a: _edit(a, treshold_0=np.array(3)), r"unexpected key 'treshold_0'"),
    (lambda a: _edit(a, weights_2=np.ones((5, 2), np.int8)), r"unexpected key 'weights_2'"),
])
def test_model_errors_name_the_key(tmp_path, base_seed, change, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **change(_model_arrays(base_seed)))
    with pytest.raises(ModelError, match=message):
        Model.load(path)


def test_model_files_that_are_not_models(tmp_path, base_seed):
    text = tmp_path / "weights.txt"
    text.write_text("not a model\n")
    with pytest.raises(ModelError, match="not a spikefab model: not an .npz"):
        Model.load(text)
    with pytest.raises(ModelError, match="cannot read .*missing.npz"):
        Model.load(tmp_path / "missing.npz")
    good = tmp_path / "good.npz"
    random_model((20, 10, 5), seed=base_seed).save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelError, match="is corrupted"):
        Model.load(truncated)
    rng = np.random.default_rng(base_seed)
    damaged = bytearray(data)
    for k in rng.choice(np.arange(200, len(data) - 400), size=40, replace=False):
        damaged[k] ^= 0x5A
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(bytes(damaged))
    with pytest.raises(ModelError, match="is corrupted"):
        Model.load(corrupt)


def test_model_objects_are_validated_too():
    with pytest.raises(ModelError, match="weights_1 has 3 inputs but layer 0 has 4 outputs"):
        Model([Layer(np.zeros((5, 4), int), 10), Layer(np.zeros((3, 2), int), 10)])
    with pytest.raises(ModelError, match="weights_0 holds values in .* signed 4-bit"):
        Model([Layer(np.full((5, 4), 9), 10)], w_bits=4)


# ---- images ----

@pytest.fixture
def tiny_image(base_seed):
    return compile_model(random_model((40, 12, 6), seed=base_seed, steps=16), "tiny")


def test_image_round_trip_is_byte_identical(tmp_path, tiny_image, base_seed):
    path = tmp_path / "net.img"
    tiny_image.save(path)
    data = path.read_bytes()
    assert data.startswith(MAGIC) and data[-32:] == hashlib.sha256(data[:-32]).digest()
    loaded = ChipImage.load(path)
    assert loaded == tiny_image
    loaded.save(tmp_path / "again.img")
    assert (tmp_path / "again.img").read_bytes() == data
    # Compiling the same model again gives the same bytes.
    again = compile_model(random_model((40, 12, 6), seed=base_seed, steps=16), "tiny")
    assert again.to_bytes() == data, f"seed {base_seed}"
    assert loaded.steps == 16 and loaded.drain_ticks == 1 and loaded.classes == 6


def _resealed(data: bytes) -> bytes:
    body = data[:-32]
    return body + hashlib.sha256(body).digest()


def test_image_errors(tmp_path, tiny_image, base_seed):
    data = tiny_image.to_bytes()
    head_len = struct.unpack_from("<I", data, 10)[0]
    first_record = 14 + head_len + 4
    word_bytes, pos, words = tiny_image.info.word_bytes, first_record, []
    for write in tiny_image.writes:    # where the words are
        words += range(pos + 10, pos + 10 + len(write.words) * word_bytes)
        pos += 10 + len(write.words) * word_bytes
    assert pos + 32 == len(data)
    rng = np.random.default_rng(base_seed)
    # A flipped bit in the header text, in words, in the checksum.
    for k in [20, 14 + head_len // 2, len(data) - 5, len(data) - 32,
              *rng.choice(words, size=10, replace=False)]:
        damaged = bytearray(data)
        damaged[k] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ImageError, match="checksum mismatch: .* is corrupted"):
            ChipImage.from_bytes(bytes(damaged))
    for cut in [4, 9, 12, 14 + head_len // 2, first_record + 30, len(data) - 40, len(data) - 1]:
        with pytest.raises(ImageError, match="truncated"):
            ChipImage.from_bytes(data[:cut])
    with pytest.raises(ImageError, match="not a spikefab chip image \\(bad magic"):
        ChipImage.from_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(ImageError, match="is empty: not a spikefab chip image"):
        ChipImage.from_bytes(b"")
    newer = bytearray(data)
    newer[8:10] = struct.pack("<H", IMAGE_VERSION + 1)
    with pytest.raises(ImageError, match=f"image format version {IMAGE_VERSION + 1}; this "
                                         f"spikefab reads version {IMAGE_VERSION}: compile "
                                         f"the model again"):
        ChipImage.from_bytes(_resealed(bytes(newer)))
    with pytest.raises(ImageError, match="bytes after its checksum"):
        ChipImage.from_bytes(data + b"\x00")
    # A record outside its region, with a checksum that matches.
    outside = bytearray(data)
    tile, region, offset, count = struct.unpack_from("<BBII", outside, first_record)
    assert (tile, region, offset) == (0, Region.SYNAPSE, 0)
    struct.pack_into("<BBII", outside, first_record, 0, Region.SYNAPSE, 250, count)
    with pytest.raises(ImageError, match=r"inconsistent: record 0 .* does not fit the chip: "
                                         r"words 250\.\.374 are outside SYNAPSE of tile 0"):
        ChipImage.from_bytes(_resealed(bytes(outside)))
    struct.pack_into("<BBII", outside, first_record, 0, 9, 0, count)
    with pytest.raises(ImageError, match="region 9 does not exist"):
        ChipImage.from_bytes(_resealed(bytes(outside)))
    path = tmp_path / "x.img"
    with pytest.raises(ImageError, match="cannot read"):
        ChipImage.load(path)
    path.write_bytes(data[:100])
    with pytest.raises(ImageError, match=f"{path} is truncated"):
        ChipImage.load(path)


def test_image_validation_refuses_writes_outside_the_chip(tiny_image):
    tiny_image.writes.append(MemoryWrite(2, Region.BIAS, 0, (1,)))
    with pytest.raises(ImageError, match="tile 2 does not exist"):
        tiny_image.to_bytes()
    tiny_image.writes[-1] = MemoryWrite(0, Region.BIAS, 0, (0,) * 200)
    with pytest.raises(ImageError, match="a record holds 1 to 125 words"):
        tiny_image.validate()


# ---- compiler ----

def _too_big(sizes, seed):
    rng = np.random.default_rng(seed)
    layers = [Layer(rng.integers(-5, 6, size=(a, b)), 100) for a, b in zip(sizes, sizes[1:])]
    return Model(layers)


@pytest.mark.parametrize("sizes, profile, messages", [
    ((784, 300, 10), "icebreaker",
     ["layer 0 (784 -> 300): needs 300 neurons, core (0,0) of profile 'icebreaker' has 128 "
      "(172 too many)",
      "layer 0 (784 -> 300): needs 300 route destinations (1 per neuron), core (0,0) of "
      "profile 'icebreaker' has 128 (172 too many)",
      "layer 1 (300 -> 10): needs 300 axons, core (1,0) of profile 'icebreaker' has 128 "
      "(172 too many)"]),
    ((70, 16, 8), "tiny",
     ["layer 0 (70 -> 16): needs 70 axons, core (0,0) of profile 'tiny' has 64 (6 too many)"]),
    ((40, 12, 9), "tiny",
     ["layer 1 (12 -> 9): needs 9 neurons, core (1,0) of profile 'tiny' has 8 (1 too many)"]),
    ((40, 12, 6, 3), "tiny",
     ["the model has 3 layers, but profile 'tiny' has 2 tiles (one layer per tile; "
      "1 too many); without --profile the chip is generated for the network"]),
])
def test_compile_errors_name_the_layer_and_the_excess(base_seed, sizes, profile, messages):
    with pytest.raises(CompileError) as info:
        compile_model(_too_big(sizes, base_seed), profile)
    for message in messages:
        assert message in str(info.value)


def test_compile_errors_for_widths_thresholds_and_route_tables(base_seed):
    model = random_model((40, 12, 6), seed=base_seed, v_bits=12)
    with pytest.raises(CompileError, match="layer 0 \\(40 -> 12\\): the model has 12-bit "
                                           "membranes, core \\(0,0\\) of profile 'tiny' has "
                                           "16-bit"):
        compile_model(model, "tiny")
    small = ChipProfile("small", "few routes", 2, 1, (0, 0), {
        (0, 0): TileConfig(CoreShape(64, 16), lanes=4, destinations=8),
        (1, 0): TileConfig(CoreShape(16, 8, v_bits=12), lanes=4, destinations=8)})
    model = random_model((40, 12, 6), seed=base_seed)
    model.layers[1].threshold = 3000
    with pytest.raises(CompileError) as info:
        compile_model(model, small)
    text = str(info.value)
    assert ("layer 0 (40 -> 12): needs 12 route destinations (1 per neuron), core (0,0) of "
            "profile 'small' has 8 (4 too many)") in text
    assert "layer 1 (12 -> 6): the model has 16-bit membranes" in text
    # A 4-bit model runs bit-exact on 8-bit synapses.
    assert compile_model(random_model((40, 12, 6), seed=base_seed, w_bits=4), "tiny")


def test_the_image_writes_every_word_of_every_tile_in_frame_sized_records(base_seed):
    model = random_model((784, 128, 10), seed=base_seed, steps=10)
    image = compile_model(model, "icebreaker")
    info = image.info
    assert max(len(w.words) for w in image.writes) == max_record_words(8) == 62
    assert all(len(w.payload(8)) <= MAX_PAYLOAD for w in image.writes)
    covered = {}
    for w in image.writes:
        covered.setdefault((w.tile, w.region), set()).update(
            range(w.offset, w.offset + len(w.words)))
    for k, tile in enumerate(info.tiles):
        for region in Region:
            want = set(range(tile.regions[region]))
            if region is Region.REGISTER:
                want = {0, 1, 2}   # threshold, leak, reset; the counters are left alone
            assert covered[k, region] == want, (k, region.name)
    placement = image.meta["placement"]
    assert [p["tile"] for p in placement] == [[0, 0], [1, 0]]
    assert image.meta["sha256"] == model.digest() and image.meta["sizes"] == [784, 128, 10]
    assert (image.input_tiles, image.outputs, image.inputs, image.classes) == \
        (((0, 0),), (OutputSlice((1, 0), 0, 10),), 784, 10)


def test_route_words_follow_the_gateware_layouts():
    for start, count, to_host in [(0, 0, 0), (5, 1, 0), (1023, 2047, 1), (0, 0, 1)]:
        assert route_entry(start, count, to_host) == RouteEntry.const(
            {"start": start, "count": count, "to_host": to_host}).as_bits()
    for x, y, axon in [(0, 0, 0), (1, 2, 300), (7, 7, 1023)]:
        assert route_dest(x, y, axon) == RouteDest.const(
            {"x": x, "y": y, "axon": axon}).as_bits()
        assert unpack_route_dest(route_dest(x, y, axon)) == (x, y, axon)
    for start, count, to_host in [(5, 1, False), (1023, 2047, True)]:
        assert unpack_route_entry(route_entry(start, count, to_host)) == (start, count, to_host)
    assert (RouteEntry.size, RouteDest.size) == (RouteEntry.size, RouteDest.size)


# ---- end to end: the image through the host link, against the model ----

def _request(link, command, payload=b""):
    """One request with a seq of its own (1 to 255 in turn: the same seq and command twice
    would be a repeat, answered but not executed)."""
    seq = link.test_seq = getattr(link, "test_seq", 0) % 255 + 1
    frames = SlipDecoder().feed(link.receive(frame(seq, command, payload)))
    assert len(frames) == 1
    rseq, status, answer = parse_body(*frames[0])
    assert rseq == seq
    return Status(status), answer


def _write(link, tile, region, offset, words, word_bytes):
    status, _ = _request(link, Command.WRITE,
                         MemoryWrite(tile, region, offset, tuple(words)).payload(word_bytes))
    return status


def _scribble(link, rng):
    """Fill every memory of the chip with garbage, as SPRAM holds at power-up."""
    info = link.info
    chunk = max_record_words(info.word_bytes)
    for k, tile in enumerate(info.tiles):
        for region in Region:
            size = tile.regions[region]
            if region is Region.REGISTER:
                words = [int(rng.integers(1, 1 << (tile.v_bits - 1))),
                         int(rng.integers(0, tile.v_bits)), int(rng.integers(0, 2))]
            else:
                words = [int(w) for w in rng.integers(0, 1 << (8 * info.word_bytes),
                                                      size=size, dtype=np.uint64)]
            for start in range(0, len(words), chunk):
                assert _write(link, k, region, start, words[start:start + chunk],
                              info.word_bytes) is Status.OK


def _load(link, image):
    for n, write in enumerate(image.writes):
        status, answer = _request(link, Command.WRITE,
                                  write.payload(image.info.word_bytes))
        assert status is Status.OK and answer == b"", f"record {n}: {status.name}"


def _direct(model, inputs):
    """The model layer by layer on golden cores: layer l+1 gets layer l's spikes a tick later.
    Returns the last layer's spikes, ``(T + L - 1, classes)``."""
    steps, layers = len(inputs), model.layers
    cores = [CoreModel(CoreShape(l.inputs, l.outputs, model.w_bits, model.v_bits), l.weights,
                       l.config(), l.bias) for l in layers]
    previous = [np.zeros((1, l.outputs), bool) for l in layers]
    out = []
    for t in range(steps + len(layers) - 1):
        for l, core in enumerate(cores):
            signal = (inputs[t][None] if t < steps else np.zeros((1, model.inputs))) \
                if l == 0 else previous[l - 1]
            core.deliver_spikes(signal.astype(np.int64))
        previous = [core.update() for core in cores]
        out.append(previous[-1][0])
    return np.array(out)


@pytest.mark.parametrize("case", [
    dict(sizes=(40, 12, 6)),
    dict(sizes=(64, 16, 8), bias=True, leak=[2, 1], reset=["zero", "subtract"]),
    dict(sizes=(40, 12, 6), w_bits=4, leak=3),
    dict(sizes=(50, 7), bias=True),
])
def test_image_through_the_host_link_runs_the_model(base_seed, case):
    seed = base_seed + 7 * sum(case["sizes"]) + case.get("w_bits", 8)
    rng = np.random.default_rng(seed)
    kwargs = {k: v for k, v in case.items() if k != "sizes"}
    model = random_model(case["sizes"], seed=seed, **kwargs)
    image = ChipImage.from_bytes(compile_model(model, "tiny").to_bytes())
    info = image.info
    link = LinkModel(info)
    _scribble(link, rng)
    _load(link, image)

    # What the memories hold is exactly the model, and nothing else.
    program = link.program()
    order = [(x, y) for y in range(info.rows) for x in range(info.cols)]
    count = len(model.layers)
    for k, position in enumerate(order):
        core = program.cores[position]
        shape = core.shape
        if k >= count:
            assert not core.weights.any() and not core.bias.any(), f"seed {seed}"
            assert core.config.threshold == shape.v_max, f"seed {seed}"
            assert core.routes == [[]] * shape.neurons and not core.to_host.any()
            continue
        layer = model.layers[k]
        want = np.zeros((shape.axons, shape.neurons), np.int64)
        want[:layer.inputs, :layer.outputs] = layer.weights
        assert np.array_equal(core.weights, want), f"seed {seed}: weights of layer {k}"
        bias = np.zeros(shape.neurons, np.int64)
        if layer.bias is not None:
            bias[:layer.outputs] = layer.bias
        assert np.array_equal(core.bias, bias), f"seed {seed}: bias of layer {k}"
        assert (core.config.threshold, core.config.leak, core.config.reset) == \
            (layer.threshold, layer.leak, layer.reset), f"seed {seed}: config of layer {k}"
        if k < count - 1:
            nx, ny = order[k + 1]
            routes = [[(nx, ny, n)] for n in range(layer.outputs)]
        else:
            routes = [[] for _ in range(layer.outputs)]
        routes += [[] for _ in range(shape.neurons - layer.outputs)]
        assert core.routes == routes, f"seed {seed}: routes of layer {k}"
        assert list(core.to_host) == [k == count - 1 and n < layer.outputs
                                      for n in range(shape.neurons)], f"seed {seed}"
    # The membranes and accumulators the image zeroed.
    for k, tile in enumerate(info.tiles):
        for region in (Region.MEMBRANE, Region.ACCUMULATOR):
            status, answer = _request(link, Command.READ,
                                      bytes([k, region]) + (0).to_bytes(4, "little")
                                      + tile.neurons.to_bytes(2, "little"))
            assert status is Status.OK and not any(answer), f"seed {seed}: tile {k}"

    # Running: the golden chip of what was loaded, the link itself and the model agree.
    steps = 25
    inputs = rng.random((steps, model.inputs)) < 0.5
    want = _direct(model, inputs)
    assert want.sum() > 0, f"seed {seed}: the model never spiked"
    ticks = steps + image.drain_ticks
    chip = ChipModel(program)
    [(ix, iy)] = image.input_tiles
    [output] = image.outputs
    chip_spikes = np.zeros_like(want)
    link_spikes = np.zeros_like(want)
    for t in range(ticks):
        events = ([(ix, iy, int(a)) for a in np.flatnonzero(inputs[t])] if t < steps else [])
        for x, y, n, tick in chip.step([events])[0]:
            assert (x, y) == output.tile and n < image.classes, f"seed {seed}"
            chip_spikes[tick, n] = True
        words = b"".join(struct.pack("<H", pack_event_word(x, y, a)) for x, y, a in events)
        status, answer = _request(link, Command.RUN, struct.pack("<H", 1) + words)
        assert status is Status.OK, f"seed {seed}: RUN at tick {t}: {status.name}"
        status, answer = _request(link, Command.OUTPUTS, struct.pack("<H", MAX_OUTPUTS))
        assert status is Status.OK
        for x, y, n, tick in unpack_outputs(answer):
            assert (x, y) == output.tile and tick == t, f"seed {seed}"
            link_spikes[tick, n] = True
    assert np.array_equal(chip_spikes, want), f"seed {seed}: golden chip != model"
    assert np.array_equal(link_spikes, want), f"seed {seed}: link model != model"
    assert np.array_equal(model.simulate(inputs[:, None])[:, 0], want), f"seed {seed}"


# ---- the command ----

def test_compile_command(tmp_path, capsys, base_seed):
    model_path, image_path = tmp_path / "m.npz", tmp_path / "m.img"
    model = random_model((40, 12, 6), seed=base_seed, name="demo net")
    model.save(model_path)
    assert main(["compile", str(model_path), "-o", str(image_path), "--profile", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "model demo net (40-12-6" in out and "chip 'tiny'" in out
    assert "(0,0)" in out and "40/64" in out and "12/16" in out and "120/256" in out
    assert ChipImage.load(image_path) == compile_model(model, "tiny")

    big = tmp_path / "big.npz"
    _too_big((70, 16, 8), base_seed).save(big)
    assert main(["compile", str(big), "-o", str(tmp_path / "big.img"), "--profile",
                 "tiny"]) == 1
    err = capsys.readouterr().err
    assert ("spikefab compile: error: layer 0 (70 -> 16): needs 70 axons, core (0,0) of "
            "profile 'tiny' has 64 (6 too many)") in err
    assert "Traceback" not in err and not (tmp_path / "big.img").exists()

    (tmp_path / "junk.npz").write_bytes(b"\x00" * 10)
    assert main(["compile", str(tmp_path / "junk.npz"), "-o", str(image_path)]) == 1
    assert "not a spikefab model" in capsys.readouterr().err
