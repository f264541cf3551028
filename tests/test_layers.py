"""The layers of the code: imports only go down, and no two modules import each other in a circle.

1. formats (``hdl/abi/``);
2. gateware, golden model and encoder, protocol codec, model and image formats;
3. link model, RTL harness and benches, compiler, driver;
4. CLI, trainer, importers, demos, benchmarks, board builds.

Every import counts, a function's too: an import hidden in a function is still a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hdl", "sim", "firmware", "boards")

#: The layer of every module; a module missing here fails the test (a new module must be placed).
LAYERS = {
    **{name: 1 for name in ("hdl.abi", "hdl.abi.chip", "hdl.abi.link")},
    **{f"hdl.{name}": 2 for name in (
        "lif", "synapse", "counter", "memory_map", "core", "router", "tile", "tick",
        "chip_bus", "chip_tile", "chip", "host_link", "uart", "system", "profiles")},
    **{f"hdl.{name}": 2 for name in ("core_registers", "core_events", "core_update", "core_bus")},
    **{f"hdl.{name}": 2 for name in (
        "host_link_frames", "host_link_checks", "host_link_outputs", "host_link_executor")},
    **{f"sim.{name}": 2 for name in ("golden", "golden_batch", "encoding", "chip")},
    **{f"firmware.{name}": 2 for name in ("protocol", "model", "image", "mnist")},
    **{f"sim.{name}": 3 for name in (
        "link_model", "runner", "scenario", "core_rtl", "chip_rtl", "link_rtl", "link_fast",
        "formal", "golden_chip", "link_uart")},
    **{f"sim.benches.{name}": 3 for name in (
        "streams", "core_bench", "chip_bench", "link_bench", "uart_netlist_bench")},
    **{f"firmware.{name}": 3 for name in ("mapper", "compiler", "driver", "energy")},
    **{f"firmware.{name}": 4 for name in (
        "targets", "cli", "cli_args", "run", "shard", "verify", "plot", "importers", "importers.common",
        "importers.nir_graph", "importers.snntorch_state", "train", "train.config",
        "train.network", "train.data", "train.trainer", "train.evaluate", "train.command")},
    **{f"sim.{name}": 4 for name in (
        "demo", "benchmarks", "standin", "board_timing", "chip_cycles")},
    **{f"boards.{name}": 4 for name in (
        "clocks", "synthesis", "top", "build", "netlist", "logic_depth")},
}

#: Modules that may import only from these packages/modules (prefixes), beyond their layer rule:
#: the formats nothing of spikefab but each other; the gateware nothing outside ``hdl``; the
#: golden model only the formats; the driver never the simulator or the link model (a transport
#: is handed to it).
ONLY = {
    "hdl.abi": ("hdl.abi.",),
    "hdl.abi.": ("hdl.abi.",),
    "hdl.": ("hdl.",),
    "sim.golden": ("hdl.abi",),
    "sim.golden_batch": ("hdl.abi",),
    "sim.encoding": ("hdl.abi",),
    "sim.chip": ("hdl.abi", "sim.golden"),
    "firmware.protocol": ("hdl.abi",),
    "firmware.driver": ("hdl.abi", "sim.golden", "sim.chip", "sim.encoding",
                        "firmware.protocol", "firmware.image"),
}


def _modules():
    """``(name, path)`` of every module; a package with code in its ``__init__`` is a module
    of the package's name."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                if len(parts) == 2 or not _has_code(path):
                    continue
                parts = parts[:-1]
            yield ".".join(parts), path


def _has_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               for n in body)


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """The spikefab modules ``name`` imports (anywhere in it), with line numbers."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("spikefab."):
                target = node.module[len("spikefab."):]
            else:
                continue
            # ``from . import x`` / ``from .pkg import module`` name modules themselves.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in LAYERS else target, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("spikefab."):
                    found.append((alias.name[len("spikefab."):], node.lineno))
    return [(t, line) for t, line in found if t.split(".")[0] in PACKAGES]


GRAPH = {name: _imports(name, path) for name, path in _modules()}


def test_every_module_has_a_layer():
    missing = sorted(set(GRAPH) - set(LAYERS))
    assert not missing, f"place these modules in a layer in tests/test_layers.py: {missing}"
    stale = sorted(set(LAYERS) - set(GRAPH))
    assert not stale, f"tests/test_layers.py names modules that do not exist: {stale}"


def test_every_import_names_a_module_that_exists():
    """(A relative import with a dot too few or too many names no module, and would fail only
    when the function holding it runs.)"""
    packages = {".".join(path.relative_to(ROOT).parent.parts)
                for path in ROOT.glob("*/**/__init__.py")}
    missing = [f"{name} imports {target} at line {line}: no such module"
               for name, targets in GRAPH.items() for target, line in targets
               if target not in GRAPH and target not in packages]
    assert not missing, "\n".join(missing)


def test_imports_only_go_down():
    upward = [f"{name} (layer {LAYERS[name]}) imports {target} (layer {LAYERS[target]}) "
              f"at line {line}"
              for name, targets in GRAPH.items() for target, line in targets
              if target in LAYERS and LAYERS[target] > LAYERS.get(name, 0)]
    assert not upward, "\n".join(upward)


def test_restricted_modules_import_only_what_they_may():
    bad = []
    for name, targets in GRAPH.items():
        rules = [(key, allowed) for key, allowed in ONLY.items()
                 if name == key or (key.endswith(".") and name.startswith(key))]
        if not rules:
            continue
        key, allowed = max(rules, key=lambda rule: len(rule[0]))   # the most specific rule
        for target, line in targets:
            if target != name and not any(target == a or (a.endswith(".") and
                                                           target.startswith(a))
                                          for a in allowed):
                bad.append(f"{name} imports {target} at line {line}; it may import only "
                           f"{list(allowed) or 'nothing of spikefab'}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    edges = {name: sorted({t for t, _ in targets if t in GRAPH and t != name})
             for name, targets in GRAPH.items()}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("source, expected", [
    ("from .abi import CoreShape", ["hdl.abi"]),
    ("from ..sim.golden import decode", ["sim.golden"]),
    ("def f():\n    from spikefab.firmware import cli", ["firmware.cli"]),
    ("import numpy", []),
])
def test_the_import_scanner_sees_every_form(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert [t for t, _ in _imports("hdl.m", path)] == expected
