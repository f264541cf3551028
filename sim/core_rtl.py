"""Run core scenarios on the RTL: build the LIFCore once, play scenarios through the cocotb bench."""

from __future__ import annotations

import hashlib
import os

from ..hdl.abi import CoreShape
from .runner import RTLBuild
from .scenario import CoreScenario, CoreTrace

__all__ = ["core_build", "simulate_core"]


def core_build(shape: CoreShape, *, lanes: int, memory: str = "block",
               register_reads: bool = False) -> RTLBuild:
    from ..hdl.core import LIFCore
    label = (f"core-a{shape.axons}-n{shape.neurons}-w{shape.w_bits}-p{lanes}"
             + ("-reg" if register_reads else ""))
    return RTLBuild(LIFCore(shape, lanes=lanes, memory=memory,
                            register_reads=register_reads), label)


def simulate_core(shape: CoreShape, scenarios: list[CoreScenario], *, lanes: int,
                  memory: str = "block", register_reads: bool = False,
                  run_name: str | None = None) -> list[CoreTrace]:
    """The traces the RTL produces for ``scenarios`` (all of ``shape``), in one simulator run."""
    for scenario in scenarios:
        if scenario.shape != shape:
            raise ValueError(f"scenario {scenario.name!r} is for {scenario.shape}, not {shape}")
    build = core_build(shape, lanes=lanes, memory=memory,
                       register_reads=register_reads).build()
    names = ",".join(s.name for s in scenarios)
    run_name = run_name or "run-" + hashlib.sha256(names.encode()).hexdigest()[:12]
    directory = build.directory / "runs" / run_name
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, scenario in enumerate(scenarios):
        path = directory / f"{k:03d}-{scenario.name}.npz"
        scenario.save(path)
        stale = path.with_name(path.name.removesuffix(".npz") + ".rtl.npz")
        stale.unlink(missing_ok=True)
        paths.append(path)
    build.run("spikefab.sim.benches.core_bench", name=run_name, env={
        "SPIKEFAB_LANES": str(lanes),
        "SPIKEFAB_SCENARIOS": os.pathsep.join(str(p) for p in paths),
    })
    return [CoreTrace.load(p.with_name(p.name.removesuffix(".npz") + ".rtl.npz"))
            for p in paths]
