"""The driver: one API over golden, the RTL simulation and a serial board, all giving the same
answers spike for spike."""

import json
import os
import pty
import threading
import tty

import numpy as np
import pytest

from spikefab.firmware.compiler import compile_model
from spikefab.firmware.driver import Link, LinkChip, LinkError, SerialTransport
from spikefab.firmware.targets import open_chip
from spikefab.firmware.model import random_model
from spikefab.hdl.profiles import get_profile
from spikefab.sim.golden_chip import GoldenChip
from spikefab.sim.link_model import LinkModel, ModelTransport

from conftest import record_checked


def _network(seed, sizes=(40, 12, 6)):
    return compile_model(random_model(list(sizes), seed=seed), "tiny")


def _spikes(seed, steps, images, inputs, rate=0.3):
    return (np.random.default_rng(seed).random((steps, images, inputs)) < rate).astype(np.uint8)


def _assert_same(a, b, seed):
    assert np.array_equal(a.predictions, b.predictions), (seed, a.predictions, b.predictions)
    assert np.array_equal(a.counts, b.counts), seed
    assert np.array_equal(a.final_v, b.final_v), seed
    assert a.sops == b.sops, (seed, a.sops, b.sops)
    for k, (x, y) in enumerate(zip(a.outputs, b.outputs)):
        assert sorted(x) == sorted(y), (seed, k)


def _golden(image, spikes):
    chip = GoldenChip(get_profile("tiny").info())
    chip.load(image)
    return chip.run(spikes)


def test_link_chip_equals_golden(base_seed):
    seed = base_seed + 11
    image = _network(seed)
    spikes = _spikes(seed, 12, 9, image.inputs)
    golden = _golden(image, spikes)
    assert golden.counts.sum() > 0, f"the network never answered (seed {seed})"
    chip = LinkChip(Link(ModelTransport(get_profile("tiny").info())), target="model")
    chip.load(image)
    _assert_same(chip.run(spikes), golden, seed)


def test_sim_equals_golden_spike_for_spike(base_seed):
    """The RTL (cocotb + Verilator), through the host link, against the golden model."""
    seed = base_seed + 12
    image = _network(seed, (64, 16, 8))
    spikes = _spikes(seed, 10, 4, image.inputs)
    golden = _golden(image, spikes)
    assert golden.counts.sum() > 0, f"the network never answered (seed {seed})"
    with open_chip("sim", profile="tiny") as chip:
        chip.load(image)
        sim = chip.run(spikes)
        status = chip.status()
    _assert_same(sim, golden, seed)
    assert sim.cycles > 0 and status.naks == 0 and status.bad_frames == 0
    record_checked("driver-sim", driver_images=spikes.shape[1],
                   driver_output_events=int(golden.counts.sum()))


class _BoardStandIn:
    """A pty whose far end is the golden chip behind the real codec, like a board on USB."""

    def __init__(self, info, *, answer=True):
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self.slave = slave
        self.model = LinkModel(info)
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            reply = self.model.receive(data)
            if self.answer and reply:
                os.write(self.master, reply)

    def close(self):
        os.close(self.slave)
        os.close(self.master)


def test_serial_transport_against_board_stand_in(base_seed):
    seed = base_seed + 13
    info = get_profile("tiny").info()
    image = _network(seed)
    spikes = _spikes(seed, 8, 3, image.inputs)
    board = _BoardStandIn(info)
    try:
        chip = LinkChip(Link(SerialTransport(board.path, timeout=2.0)), target="serial")
        chip.load(image)
        result = chip.run(spikes)
        chip.close()
    finally:
        board.close()
    _assert_same(result, _golden(image, spikes), seed)


def test_serial_without_board_is_a_clear_error():
    board = _BoardStandIn(get_profile("tiny").info(), answer=False)
    try:
        with pytest.raises(LinkError, match=r"no answer from .* within 0.3 s: is the board "
                                            r"connected"):
            Link(SerialTransport(board.path, timeout=0.3))
    finally:
        board.close()
    with pytest.raises(LinkError, match="cannot open serial port '/nonexistent/tty'"):
        open_chip("serial:/nonexistent/tty", profile="tiny")


def test_bad_input_is_refused(base_seed):
    image = _network(base_seed)
    chip = GoldenChip(get_profile("icebreaker").info())
    with pytest.raises(ValueError, match="compiled for chip 'tiny', which differs"):
        chip.load(image)
    chip = GoldenChip(get_profile("tiny").info())
    with pytest.raises(ValueError, match="load an image first"):
        chip.run(np.zeros((2, 1, 40), np.uint8))
    chip.load(image)
    with pytest.raises(ValueError, match=r"spikes must have shape \(steps, images, 40\)"):
        chip.run(np.zeros((2, 1, 41), np.uint8))
    with pytest.raises(ValueError, match="unknown target 'board'"):
        open_chip("board")


def test_cli_run_json(capsys):
    from spikefab.firmware.cli import main
    assert main(["run", "--target", "golden", "--count", "7", "--steps", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("target", "images", "correct", "accuracy", "predictions", "sops_per_image",
                "cycles_per_image", "seconds", "images_per_second"):
        assert key in report
    assert report["images"] == 7 and len(report["predictions"]) == 7
    assert report["cycles_per_image"] is None and report["sops_per_image"] > 0
    assert main(["run", "--count", "5000"]) == 1
    assert "--first 0 --count 5000: mnist-slice has 1000 images" in capsys.readouterr().err
    # --first: the same images give the same spikes, hence predictions, wherever a run starts.
    assert main(["run", "--first", "3", "--count", "4", "--steps", "5", "--json"]) == 0
    later = json.loads(capsys.readouterr().out)
    assert later["first_index"] == 59003 and later["predictions"] == report["predictions"][3:]
    assert main(["run", "--first", "998", "--count", "3"]) == 1
    assert "--first 998 --count 3: mnist-slice has 1000 images" in capsys.readouterr().err


def test_operations_report():
    from spikefab.firmware.energy import PJ_PER_OP, operations_report
    report = operations_report([784, 128, 10], 50_000, counted_by="golden model")
    assert report.ann_macs_per_image == 784 * 128 + 128 * 10
    assert report.snn_pj == pytest.approx(50_000 * PJ_PER_OP["int32_add"])
    assert report.ann_fp32_pj == pytest.approx(101_632 * 4.6)
    assert "Horowitz" in str(report) and "golden model" in str(report)
    with pytest.raises(ValueError, match="at least two positive widths"):
        operations_report([784], 1, counted_by="x")


def test_raster_plot(tmp_path, base_seed):
    """The rasters are the golden chip's spikes: the output panel counts what run() counts."""
    from spikefab.firmware.plot import layer_spikes, plot_raster
    seed = base_seed + 14
    image = _network(seed)
    spikes = _spikes(seed, 10, 1, image.inputs)
    chip = GoldenChip(get_profile("tiny").info())
    chip.load(image)
    result = chip.run(spikes)
    rasters = layer_spikes(image, chip.program, spikes[:, 0])
    assert [r.shape[1] for r in rasters] == [40, 12, 6]
    assert np.array_equal(rasters[0][:10], spikes[:, 0] > 0)
    assert np.array_equal(rasters[-1].sum(axis=0), result.counts[0]), seed
    plot_raster(rasters, tmp_path / "raster.png", title="test", label=3)
    assert (tmp_path / "raster.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _recording_chip(image):
    """A LinkChip on the link model of ``image``'s chip, and the list of every request
    ``(command, payload)`` its link sends."""
    link = Link(ModelTransport(image.chip_profile().info()))
    sent = []
    batch = link.batch

    def recording(requests):
        sent.extend(requests)
        return batch(requests)

    link.batch = recording
    return LinkChip(link, target="model"), sent


def test_input_spikes_reach_every_core_of_layer_0_through_input(base_seed):
    """With layer 0 split over cores, the driver sends each input spike once, in INPUT frames
    that name every core of layer 0 (the chip sends it to each in turn); the answers equal
    the golden chip's."""
    from spikefab.firmware.mapper import generate_mapping
    from spikefab.firmware.protocol import Command, parse_input
    seed = base_seed + 23
    model = random_model([30, 24, 5], seed=seed)
    image = compile_model(model, generate_mapping(model, neurons_per_core=8))
    tiles = [tuple(t) for t in image.input_tiles]
    assert len(tiles) == 3, tiles
    chip, sent = _recording_chip(image)
    chip.load(image)
    spikes = _spikes(seed, 6, 3, image.inputs)
    got = chip.run(spikes)
    inputs = [parse_input(p) for c, p in sent if c == Command.INPUT]
    info = chip.info
    mask = sum(1 << info.tile_index(x, y) for x, y in tiles)
    assert {t for t, _, _ in inputs} == {mask}, (seed, inputs[:2])
    assert sum(len(axons) for _, _, axons in inputs) == spikes.sum(), seed
    assert sum(ticks for _, ticks, _ in inputs) == spikes.shape[0] * spikes.shape[1], seed
    runs = [p for c, p in sent if c == Command.RUN]
    assert len(runs) == spikes.shape[1] * bool(image.drain_ticks), seed   # drain only
    golden = GoldenChip(info)
    golden.load(image)
    _assert_same(got, golden.run(spikes), seed)


def test_a_one_core_input_layer_gets_run_events(base_seed):
    """Layer 0 on one core: RUN events (2 bytes a spike, no tile set), the same answers."""
    from spikefab.firmware.mapper import generate_mapping
    from spikefab.firmware.protocol import Command, parse_run
    seed = base_seed + 24
    model = random_model([30, 24, 5], seed=seed)
    image = compile_model(model, generate_mapping(model))
    assert len(image.input_tiles) == 1
    chip, sent = _recording_chip(image)
    chip.load(image)
    spikes = _spikes(seed, 6, 2, image.inputs)
    got = chip.run(spikes)
    events = [e for c, p in sent if c == Command.RUN for e in parse_run(p)[1]]
    assert Command.INPUT not in {c for c, _ in sent} and len(events) == spikes.sum(), seed
    assert {(x, y) for x, y, _ in events} == {tuple(image.input_tiles[0])}, seed
    golden = GoldenChip(chip.info)
    golden.load(image)
    _assert_same(got, golden.run(spikes), seed)
