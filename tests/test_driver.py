"""The driver: one API over golden, the RTL simulation and a serial board, all giving the same
answers spike for spike."""

import json

import numpy as np
import pytest

from spikefab.firmware.compiler import compile_model
from spikefab.firmware.driver import Link, LinkChip, LinkError, SerialTransport
from spikefab.firmware.protocol import parse_run_answer, run_payload
from spikefab.hdl.abi import MAX_PAYLOAD, Command, Region, Register
from spikefab.firmware.targets import open_chip
from spikefab.firmware.model import random_model
from spikefab.hdl.profiles import get_profile
from spikefab.sim.golden_chip import GoldenChip
from spikefab.sim.link_model import LinkModel, ModelTransport
from spikefab.sim.encoding import Pixels
from spikefab.sim.standin import BoardStandIn, LineFaults

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


def test_serial_transport_against_board_stand_in(base_seed):
    seed = base_seed + 13
    info = get_profile("tiny").info()
    image = _network(seed)
    spikes = _spikes(seed, 8, 3, image.inputs)
    with BoardStandIn(info) as board:
        chip = LinkChip(Link(SerialTransport(board.path, timeout=2.0)), target="serial")
        chip.load(image)
        result = chip.run(spikes)
        chip.close()
    _assert_same(result, _golden(image, spikes), seed)
    assert result.link["retries"] == 0 and result.link["stray"] == 0


def test_serial_without_board_is_a_clear_error():
    with BoardStandIn(get_profile("tiny").info(), answer=False) as board:
        with pytest.raises(LinkError, match=r"no good answer to INFO from .* after 3 tries: "
                                            r"the line is too noisy or the board stopped "
                                            r"answering"):
            Link(SerialTransport(board.path, timeout=0.2), retries=2)
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


class _ScriptedLine:
    """A line to a LinkModel that misbehaves on cue, request by request (counting from 1):
    ``lose`` answers vanish, ``damage`` requests arrive with a byte flipped, ``stray`` gets a
    NAK for noise (seq 0) before its answer, ``twice`` gets its answer twice."""

    def __init__(self, info, *, lose=(), damage=(), stray=(), twice=()):
        self.model = LinkModel(info)
        self.timeout = 0.05
        self.lose, self.damage, self.stray, self.twice = map(set, (lose, damage, stray, twice))
        self.sent = 0
        self.seqs = []
        self._frames = []

    def send(self, data):
        from spikefab.firmware.protocol import SlipDecoder
        self.sent += 1
        self.seqs.append(SlipDecoder().feed(data)[0][0][0])
        if self.sent in self.damage:
            data = data[:3] + bytes([data[3] ^ 0x01]) + data[4:]
        answer = self.model.receive(data)
        frames = SlipDecoder().feed(answer)
        if self.sent in self.stray:
            frames = SlipDecoder().feed(self.model.receive(b"\xc0\x01\x02\xc0")) + frames
        if self.sent in self.twice:
            frames = frames + frames
        if self.sent not in self.lose:
            self._frames += frames

    def read_frame(self, timeout):
        return self._frames.pop(0) if self._frames else None

    def drain(self):
        dropped, self._frames = len(self._frames), []
        return dropped

    def close(self):
        pass


def test_link_recovers_without_running_anything_twice():
    """Lost answers, damaged requests, stray NAKs and doubled answers: every request gets its
    own answer, the chip runs each RUN once (a repeat is answered, not run), and the counters
    say what it took."""
    info = get_profile("tiny").info()
    # Requests: 1 INFO, 2 RUN (answer lost), 3 its repeat, 4 RUN (damaged), 5 its resend,
    # 6 RUN (stray NAK first), 7 RUN (answered twice), 8 STATUS (after the extra answer).
    line = _ScriptedLine(info, lose={2}, damage={4}, stray={6}, twice={7})
    link = Link(line)
    answers = [link.request(Command.RUN, run_payload(1)) for _ in range(4)]
    assert [parse_run_answer(a)[0] for a in answers] == [1, 2, 3, 4]
    assert link.status().ticks == 4 and line.model.repeats == 1
    assert line.seqs == [1, 2, 2, 3, 3, 4, 5, 6]
    c = link.counters
    assert (c.retries, c.stray, c.resyncs) == (2, 2, 0)


def test_link_never_uses_seq_0():
    line = _ScriptedLine(get_profile("tiny").info())
    link = Link(line)
    for _ in range(300):
        link.status()
    assert 0 not in line.seqs and sorted(set(line.seqs)) == list(range(1, 256))


def test_a_damaged_long_request_goes_again_in_pieces():
    """A WRITE refused as damaged (nothing written) is cut in smaller WRITEs; the words land
    all the same, and the next requests stay smaller while the line is bad."""
    info = get_profile("tiny").info()
    line = _ScriptedLine(info, damage={2})
    link = Link(line)
    words = list(range(1, 101))
    link.write(0, Region.SYNAPSE, 0, words)
    assert link.counters.splits >= 1 and link.frame_payload < MAX_PAYLOAD
    assert link.read(0, Region.SYNAPSE, 0, 100) == words


def test_a_refusal_is_not_retried():
    line = _ScriptedLine(get_profile("tiny").info())
    link = Link(line)
    with pytest.raises(LinkError, match="the chip refused READ: address outside the chip"):
        link.read(9, Region.SYNAPSE, 0, 1)
    assert link.counters.retries == 0


@pytest.mark.parametrize("kind", ["pty", "socket"])
def test_noisy_line_gives_the_golden_answers(base_seed, kind):
    """The board stand-in behind a line that flips, drops, doubles and delays 1 % of the bytes
    and cuts requests short: the run through ``serial:`` equals golden spike for spike, and
    the link reports the retries it took."""
    seed = base_seed + 17
    info = get_profile("tiny").info()
    image = _network(seed)
    spikes = _spikes(seed, 8, 12, image.inputs)
    faults = LineFaults(rate=0.01, seed=seed, delay=0.06)
    with BoardStandIn(info, kind=kind, faults=faults, timeout=0.05) as board:
        chip = LinkChip(Link(SerialTransport(board.path, timeout=0.3)), target="serial")
        chip.load(image)
        result = chip.run(spikes)
        chip.close()
        applied = board.faults_applied()
    _assert_same(result, _golden(image, spikes), seed)
    assert sum(applied.values()) > 20, applied
    assert result.link["retries"] > 0, result.link
    record_checked("noisy-line", noisy_line_images=spikes.shape[1],
                   noisy_line_faults=sum(applied.values()),
                   noisy_line_retries=result.link["retries"])


def _pixels(seed, steps, images, inputs):
    """Images for the chip's encoder: a third of the pixels lit, a few at 255."""
    rng = np.random.default_rng(seed)
    images_ = rng.integers(1, 256, size=(images, inputs)) * (rng.random((images, inputs)) < 0.3)
    return Pixels.of(images_.astype(np.uint8), steps, seed)


@pytest.mark.parametrize("rate", [0.0, 0.01])
def test_streamed_encodes_give_the_golden_answers(base_seed, rate):
    """Images as pixels on a chip with the encoder and a queue (the ``tiny`` profile's): one
    ENCODE each, streamed (the next sent while the chip runs one); on a clean line nothing is
    sent twice, and on a line that damages 1 % of the bytes the requests after a lost answer
    go again one at a time. Either way every result equals golden's."""
    seed = base_seed + 19 + int(rate * 100)
    info = get_profile("tiny").info()
    assert info.encoder and info.rx_queue
    image = _network(seed)
    pixels = _pixels(seed, 6, 16, image.inputs)
    faults = LineFaults(rate=rate, seed=seed, delay=0.06) if rate else None
    with BoardStandIn(info, faults=faults, timeout=0.05) as board:
        chip = LinkChip(Link(SerialTransport(board.path, timeout=0.3)), target="serial")
        chip.load(image)
        sent = chip.link.counters.requests
        result = chip.run(pixels)
        chip.close()
    golden = _golden(image, pixels)
    assert golden.counts.sum() > 0, f"the network never answered (seed {seed})"
    if rate:
        # An image sent again after a lost answer may run twice: the same results, but the
        # chip's counters count both runs.
        assert result.sops >= golden.sops, seed
        result.sops = golden.sops
    _assert_same(result, golden, seed)
    if not rate:
        # One ENCODE per image, and the synaptic-op counters and STATUS before and after.
        assert result.link["retries"] == 0 and result.link["stray"] == 0, result.link
        assert chip.link.counters.requests - sent == 16 + 2 * (len(info.tiles) + 1), seed
    else:
        assert result.link["retries"] > 0, result.link


@pytest.mark.parametrize("target", ["model", "sim"])
def test_pixels_in_batches_give_the_golden_answers(base_seed, target):
    """Over a transport that loses nothing (the link model; the RTL in the C++ harness, whose
    request queue takes the next ENCODEs while the chip runs one), the streamed ENCODEs go in
    batches; every result equals golden's."""
    seed = base_seed + 23
    image = _network(seed)
    pixels = _pixels(seed, 5, 20, image.inputs)
    if target == "model":
        chip = LinkChip(Link(ModelTransport(get_profile("tiny").info())), target="model")
    else:
        chip = open_chip("sim", profile="tiny")
    with chip:
        chip.load(image)
        result = chip.run(pixels)
    golden = _golden(image, pixels)
    assert golden.counts.sum() > 0, f"the network never answered (seed {seed})"
    _assert_same(result, golden, seed)


def test_standin_command_refuses_bad_options(capsys):
    from spikefab.firmware.cli import main
    assert main(["standin", "--kinds", "flip,melt"]) == 1
    assert "fault kinds are some of flip, drop, duplicate, delay, cut; not ['melt']" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["standin", "--faults", "1.5"])
    assert "expected a fraction from 0 to 1, got '1.5'" in capsys.readouterr().err


def test_a_run_that_may_have_run_is_never_split():
    """A long RUN whose answer is lost, then whose resend is damaged (NAK CRC: that attempt
    did nothing, but the first may have run): the driver must send it again whole, with its
    seq, and not as smaller new requests, which would inject its events twice."""
    info = get_profile("tiny").info()
    line = _ScriptedLine(info, lose={2}, damage={3})
    link = Link(line)
    axons = info.tiles[0].axons
    events = [(0, 0, k % axons) for k in range(200)]
    link.request(Command.RUN, run_payload(1, events))
    assert link.status().ticks == 1
    assert link.read(0, Region.REGISTER, Register.EVENTS, 1) == [200]
    assert link.counters.splits == 0 and link.counters.retries == 2
