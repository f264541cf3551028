"""Logic depth of a synthesized iCE40 netlist: how many LUTs stand between registers.

nextpnr reports one critical path per clock. To know what stands between a design and a clock,
every register-to-register path matters: :func:`logic_depths` walks Yosys's JSON netlist
(``top.json`` in a build directory, after ``synth_ice40``) and gives, for every input of a
register, block RAM, SPRAM, DSP or I/O cell, the deepest chain of LUTs and carry bits that
reaches it from the output of one, and an estimate of its delay.

The estimate uses the UP5K's figures as nextpnr's timing reports give them (BENCHMARKS.md,
"The UP5K's clock"): a flip-flop's clock-to-out 1.39 ns and setup 0.82 ns, a LUT 0.87-1.28 ns
by input, a carry bit 0.28 ns (0.68 into a chain), and 1.76 ns for every net between cells,
the common route in those reports (a carry chain's own links cost nothing). A LUT whose output
only feeds one flip-flop shares its logic cell (the placer packs them), so it counts as the
flip-flop's setup, as nextpnr counts it. Routing on a nearly full device is often longer, so the
estimate is what a path needs at least with common routes, not what it will get.

``python -m spikefab.boards.logic_depth DIR/icebreaker/top.json --clock 40`` prints the
endpoints that cannot make the clock by the estimate, grouped by module, and the deepest path.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["UP5K", "Endpoint", "logic_depths", "depth_report"]

#: The delays of the estimate, in ns (see the module's docstring).
UP5K = {
    "clk_to_q": 1.39, "setup": 0.824, "route": 1.761,
    "lut": {"I0": 1.284, "I1": 1.231, "I2": 1.205, "I3": 0.874},
    "carry": {"CI": 0.278, "I0": 0.675, "I1": 0.675},
}

_COMBINATIONAL = {"SB_LUT4": ("O", ("I0", "I1", "I2", "I3")),
                  "SB_CARRY": ("CO", ("CI", "I0", "I1"))}
_CLOCKS = {"C", "CLK", "RCLK", "WCLK", "CLOCK", "INPUT_CLK", "OUTPUT_CLK", "CLKHF", "CLKLF",
           "REFERENCECLK", "GLOBAL_BUFFER_OUTPUT"}


@dataclass
class Endpoint:
    """An input of a sequential cell: its LUTs and carry bits deep, the estimated delay of its
    deepest path (clock-to-out to setup), the cell and module, and the path's cells."""
    cell: str
    port: str
    kind: str
    luts: int
    carries: int
    delay_ns: float
    path: list = field(default_factory=list)

    @property
    def module(self) -> str:
        return module_of(self.cell)


def module_of(cell: str) -> str:
    """The module a cell of a flattened netlist came from: its name's dotted prefix (Yosys
    names a cell after the signal it drives, ``system.link.executor.state_SB_DFF_Q``)."""
    name = re.split(r"_SB_|\$", cell.lstrip("\\"), maxsplit=1)[0]
    return name.rsplit(".", 1)[0] if "." in name else "(top)"


def logic_depths(netlist: str | Path | dict, *, delays: dict = UP5K, top: str = "top"
                 ) -> list[Endpoint]:
    """Every endpoint of ``netlist`` (a Yosys JSON file or its parsed dict) with its deepest
    path. ValueError for a netlist without module ``top`` or with a loop of LUTs."""
    design = netlist if isinstance(netlist, dict) else json.loads(Path(netlist).read_text())
    try:
        cells = design["modules"][top]["cells"]
    except KeyError:
        raise ValueError(f"the netlist has no module {top!r}: give the top.json of a build "
                         f"directory (after synth_ice40)") from None
    driver = {}                        # bit -> (cell, port)
    users = defaultdict(list)          # bit -> [(cell, port)]
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            direction = cell.get("port_directions", {}).get(port, "input")
            for bit in bits:
                if isinstance(bit, str):      # a constant
                    continue
                if direction == "output":
                    driver[bit] = (name, port)
                else:
                    users[bit].append((name, port))

    arrival: dict[str, tuple] = {}     # combinational cell -> (ns, luts, carries, pred cell)
    busy = set()

    def source(bit):
        """The arrival of a net's value at its driver's output: (ns, luts, carries, cell)."""
        if bit not in driver:
            return (0.0, 0, 0, None)
        name, port = driver[bit]
        if cells[name]["type"] not in _COMBINATIONAL:
            return (delays["clk_to_q"], 0, 0, None)
        return cell_arrival(name)

    def cell_arrival(name):
        if name in arrival:
            return arrival[name]
        if name in busy:
            raise ValueError(f"a combinational loop through {name}")
        busy.add(name)
        cell = cells[name]
        kind = cell["type"]
        best = (0.0, 0, 0, None)
        for port in _COMBINATIONAL[kind][1]:
            for bit in cell["connections"].get(port, []):
                if isinstance(bit, str):
                    continue
                ns, luts, carries, _ = source(bit)
                chained = kind == "SB_CARRY" and port == "CI"
                ns += (0.0 if chained else delays["route"])
                if kind == "SB_LUT4":
                    ns, luts = ns + delays["lut"][port], luts + 1
                else:
                    ns, carries = ns + delays["carry"][port], carries + 1
                if ns > best[0]:
                    best = (ns, luts, carries, (name, bit))
        busy.discard(name)
        arrival[name] = best
        return best

    def trace(name):
        path = []
        while name is not None:
            path.append(name)
            pred = arrival[name][3]
            if pred is None:
                break
            bit = pred[1]
            name = driver[bit][0] if bit in driver and cells[driver[bit][0]]["type"] \
                in _COMBINATIONAL else None
        return path[::-1]

    endpoints = []
    for name, cell in cells.items():
        kind = cell["type"]
        if kind in _COMBINATIONAL:
            continue
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "output" or port in _CLOCKS:
                continue
            for bit in bits:
                if isinstance(bit, str) or bit not in driver:
                    continue
                dname, _ = driver[bit]
                if cells[dname]["type"] not in _COMBINATIONAL:
                    ns, luts, carries = delays["clk_to_q"] + delays["route"], 0, 0
                    path = []
                else:
                    ns, luts, carries, _ = cell_arrival(dname)
                    path = trace(dname)
                    packed = (kind.startswith("SB_DFF") and port == "D"
                              and cells[dname]["type"] == "SB_LUT4" and len(users[bit]) == 1)
                    if packed:   # the LUT shares the flip-flop's cell: its delay is the setup
                        ns -= delays["lut"][_last_port(cells[dname], arrival[dname])]
                        luts -= 1
                    else:
                        ns += delays["route"]
                endpoints.append(Endpoint(name, port, kind, luts, carries,
                                          ns + delays["setup"], path))
    return endpoints


def _last_port(cell, arrival_entry) -> str:
    pred = arrival_entry[3]
    if pred is None:
        return "I3"
    for port, bits in cell["connections"].items():
        if pred[1] in bits and port in _COMBINATIONAL["SB_LUT4"][1]:
            return port
    return "I3"


def depth_report(endpoints: list[Endpoint], clock_mhz: float) -> str:
    """The endpoints whose estimate misses ``clock_mhz``, by module, with a histogram of
    LUT depth and the deepest path."""
    period = 1000.0 / clock_mhz
    late = [e for e in endpoints if e.delay_ns > period]
    lines = [f"{len(endpoints):,} endpoints; {len(late):,} estimated over {period:.2f} ns "
             f"({clock_mhz:g} MHz)", "",
             "| LUTs deep | endpoints | of them late |", "|---|---|---|"]
    by_depth = defaultdict(lambda: [0, 0])
    for e in endpoints:
        by_depth[e.luts][0] += 1
        by_depth[e.luts][1] += e.delay_ns > period
    for depth in sorted(by_depth):
        lines.append(f"| {depth} | {by_depth[depth][0]:,} | {by_depth[depth][1]:,} |")
    modules = defaultdict(list)
    for e in late:
        modules[e.module].append(e)
    lines += ["", "| module of the endpoint | late endpoints | deepest (LUTs) | "
              "worst estimate (ns) |", "|---|---|---|---|"]
    for module, es in sorted(modules.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| {module} | {len(es):,} | {max(e.luts for e in es)} | "
                     f"{max(e.delay_ns for e in es):.1f} |")
    if endpoints:
        worst = max(endpoints, key=lambda e: e.delay_ns)
        lines += ["", f"deepest: {worst.luts} LUTs and {worst.carries} carry bits, "
                      f"{worst.delay_ns:.1f} ns, into {worst.cell} ({worst.port}):"]
        lines += [f"  {module_of(c)}  {c}" for c in worst.path]
    return "\n".join(lines)


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m spikefab.boards.logic_depth",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("netlist", help="a build's Yosys netlist: DIR/icebreaker/top.json")
    parser.add_argument("--clock", type=float, default=40.0, help="MHz (default 40)")
    args = parser.parse_args(argv)
    try:
        endpoints = logic_depths(args.netlist)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    print(depth_report(endpoints, args.clock))


if __name__ == "__main__":
    main()
