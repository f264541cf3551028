"""The spikefab command: the demo end to end, errors without tracebacks."""

import subprocess
import sys

import numpy as np
import pytest

from spikefab.firmware.cli import main
from spikefab.sim.runner import SimulationError, simulator_name


def test_mnist_demo_streams_the_shipped_model_through_the_rtl(capsys):
    # The README's first command: the whole iCEBreaker chip (two cores, routers, host link) in
    # Verilator, driven over the wire protocol, against the golden model.
    assert main(["demo", "--model", "mnist-fast", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert "RTL (Verilator) == golden model: all" in out
    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [59000, 59001, 59002]
    assert all(r[2] == r[3] and len(r) == 14 for r in rows)      # RTL and golden predictions
    assert "accuracy: RTL" in out and "mesh cycles per image" in out


def test_mnist_demo_reports_every_disagreement():
    from spikefab.firmware.driver import RunResult
    from spikefab.sim.demo import MnistDemo
    counts, final_v = np.zeros((2, 10), np.int64), np.zeros((2, 10), np.int64)
    golden = RunResult("golden", np.zeros(2, np.int64), counts, final_v,
                       [[(1, 0, 3, 4)], [(1, 0, 3, 4)]], sops=100)
    rtl = RunResult("sim", np.zeros(2, np.int64), counts, final_v + [[0] * 9 + [1], [0] * 10],
                    [[(1, 0, 3, 4)], [(1, 0, 3, 5)]], sops=99, cycles=10, seconds=1.0)
    demo = MnistDemo("m", "icebreaker", 25, np.zeros(2, np.int64), np.array([7, 8]), rtl, golden,
                     0.0)
    problems = demo.disagreements
    assert len(problems) == 3
    assert problems[0].startswith("image 0: final output membranes")
    assert problems[1].startswith("image 1: output spikes differ (RTL only: [(1, 0, 3, 5)]")
    assert problems[2] == "synaptic ops 99 != 100"
    assert "RTL and golden model DISAGREE" in demo.report()


def test_demo_agrees_and_draws_a_raster(capsys):
    assert main(["demo", "--core", "--axons", "40", "--neurons", "12", "--ticks", "30", "--lanes", "4",
                 "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "RTL (Verilator) == golden model" in out
    rows = [line for line in out.splitlines() if line.startswith("n") and line[1:3].isdigit()]
    assert len(rows) == 12 and all(len(r.split()[1]) == 30 for r in rows)
    assert any("|" in r for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["demo", "--count", "0"], "expected a positive integer, got 0"),
    (["demo", "--neurons", "0"], "expected a positive integer, got 0"),
    (["demo", "--lanes", "3"], "invalid choice: 3"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["build", "--board", "de10"], "argument --board: invalid choice: 'de10'"),
])
def test_usage_errors(argv, message):
    result = subprocess.run([sys.executable, "-m", "spikefab.firmware.cli", *argv],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr


def test_demo_refuses_a_core_too_large(capsys):
    assert main(["demo", "--core", "--neurons", "300"]) == 1
    err = capsys.readouterr().err
    assert "error: --axons must be <= 1024 and --neurons <= 256" in err
    assert "Traceback" not in err


def test_unknown_simulator_is_named(monkeypatch):
    monkeypatch.setenv("SIM", "modelsim")
    with pytest.raises(SimulationError, match="SIM='modelsim' is not supported"):
        simulator_name()
