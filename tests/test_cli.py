"""The spikefab command: the demo end to end, errors without tracebacks."""

import subprocess
import sys

import pytest

from spikefab.firmware.cli import main
from spikefab.sim.runner import SimulationError, simulator_name


def test_demo_agrees_and_draws_a_raster(capsys):
    assert main(["demo", "--axons", "40", "--neurons", "12", "--ticks", "30", "--lanes", "4",
                 "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "RTL (Verilator) == golden model" in out
    rows = [line for line in out.splitlines() if line.startswith("n") and line[1:3].isdigit()]
    assert len(rows) == 12 and all(len(r.split()[1]) == 30 for r in rows)
    assert any("|" in r for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["demo", "--neurons", "0"], "expected a positive integer, got 0"),
    (["demo", "--lanes", "3"], "invalid choice: 3"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_errors(argv, message):
    result = subprocess.run([sys.executable, "-m", "spikefab.firmware.cli", *argv],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr


def test_demo_refuses_a_core_too_large(capsys):
    assert main(["demo", "--neurons", "300"]) == 1
    err = capsys.readouterr().err
    assert "error: --axons must be <= 1024 and --neurons <= 256" in err
    assert "Traceback" not in err


def test_unknown_simulator_is_named(monkeypatch):
    monkeypatch.setenv("SIM", "modelsim")
    with pytest.raises(SimulationError, match="SIM='modelsim' is not supported"):
        simulator_name()
