"""Board tops: PLL settings, elaboration of every board, the build report, programming errors."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from spikefab.boards.build import BuildReport, ProgramError, _report, build_board, program_board
from spikefab.boards.clocks import ecp5_pll, ice40_pll
from spikefab.boards.synthesis import tool_path
from spikefab.boards.top import BOARDS, Family, board_top
from spikefab.hdl.abi import MemoryStyle


@pytest.mark.parametrize("mhz", [24, 27, 30, 36, 42, 48, 60])
def test_ice40_pll_matches_icepll(mhz):
    pll = ice40_pll(12, mhz)
    out = subprocess.run([tool_path("yowasp-icepll"), "-i", "12", "-o", str(mhz)],
                         capture_output=True, text=True, check=True).stdout
    field = {k: int(v) for k, v in re.findall(r"^(DIVR|DIVF|DIVQ|FILTER_RANGE):\s+(\d+)", out,
                                              re.MULTILINE)}
    assert (pll.divr, pll.divf, pll.divq, pll.filter_range) == \
        (field["DIVR"], field["DIVF"], field["DIVQ"], field["FILTER_RANGE"])
    achieved = float(re.search(r"F_PLLOUT:\s+([\d.]+) MHz \(achieved\)", out).group(1))
    assert pll.f_out_mhz == pytest.approx(achieved, abs=1e-3)


@pytest.mark.parametrize("mhz", [50, 75, 90, 100, 125])
def test_ecp5_pll_is_in_range_and_exact(mhz):
    pll = ecp5_pll(25, mhz)
    assert pll.f_out_mhz == pytest.approx(mhz)
    assert 400 <= pll.f_out_mhz * pll.clkop_div <= 800
    if mhz == 100:      # what yowasp-ecppll -i 25 -o 100 writes
        assert (pll.clki_div, pll.clkfb_div, pll.clkop_div, pll.clkop_cphase) == (1, 4, 6, 2)


def test_pll_refuses_impossible_clocks():
    with pytest.raises(ValueError, match="16-275 MHz, not 500"):
        ice40_pll(12, 500)
    with pytest.raises(ValueError, match="3.125-400 MHz, not 1000"):
        ecp5_pll(25, 1000)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_every_board_elaborates(board, tmp_path):
    report = build_board(board, build_dir=tmp_path, do_build=False)
    assert report.bitstream is None and report.board == board
    top = board_top(board)
    plan = top.platform_class().prepare(top, name="top")
    files = plan.files
    rtlil = files["top.il"]
    assert ("SB_PLL40_PAD" if board == "icebreaker" else "EHXPLLL") in rtlil
    # Both cores, both routers and the host link are in the design, and the UART is on pins.
    for part in ("core_0_0", "core_1_0", "link", "uart"):
        assert part in rtlil
    constraints = files["top.pcf"] if board == "icebreaker" else files["top.lpf"]
    assert "uart_0__rx" in constraints and "uart_0__tx" in constraints


def test_board_defaults():
    ice, ecp = board_top("icebreaker"), board_top("ulx3s-85f")
    assert ice.profile.name == "icebreaker" and ice.clock_mhz == 27 and ice.divisor == 9
    assert ecp.profile.name == "ulx3s" and ecp.clock_mhz == 90 and ecp.divisor == 30
    assert ice.profile.tiles[0, 0].memory == MemoryStyle.SPRAM
    assert all(t.memory == MemoryStyle.BLOCK for t in ecp.profile.tiles.values())


def test_bad_board_options_are_named():
    with pytest.raises(ValueError, match="unknown board 'de10'; supported: icebreaker, ulx3s-85f"):
        board_top("de10")
    with pytest.raises(ValueError, match="12000000 baud from 42 MHz: 4 cycles per bit, 12.5% off"):
        board_top("icebreaker", clock_mhz=42, baudrate=12_000_000)
    with pytest.raises(ValueError, match="unknown chip profile 'huge'"):
        board_top("icebreaker", profile="huge")


def test_report_reads_nextpnr(tmp_path):
    top = board_top("icebreaker")
    (tmp_path / "top.report.json").write_text(json.dumps({
        "utilization": {"ICESTORM_LC": {"used": 5000, "available": 5280},
                        "ICESTORM_RAM": {"used": 31, "available": 30},
                        "ICESTORM_SPRAM": {"used": 4, "available": 4}},
        "fmax": {"clk12": {"achieved": 200.0, "constraint": 12.0},
                 "clk": {"achieved": 26.5, "constraint": 27.0}}}))
    report = _report("icebreaker", top, tmp_path, Family.ICE40, 1.0)
    assert report.fmax_mhz == 26.5 and not report.timing_met and report.target_mhz == 27
    assert report.resources["logic_cells"] == {"used": 5000, "available": 5280}
    assert not report.fits()                          # 31 of 30 EBR
    assert "timing NOT MET" in str(report) and "ebr" in str(report)
    (tmp_path / "top.report.json").unlink()
    with pytest.raises(Exception, match="nextpnr wrote no report"):
        _report("icebreaker", top, tmp_path, Family.ICE40, 1.0)


def test_a_design_too_large_is_diagnosed(tmp_path):
    from spikefab.boards.build import _diagnosis
    (tmp_path / "top.tim").write_text("Info: Device utilisation:\n"
                                      "Info: \t         ICESTORM_LC:   12215/   5280   231%\n"
                                      "Info: \t        ICESTORM_RAM:      36/     30   120%\n"
                                      "Info: \t      ICESTORM_SPRAM:       4/      4   100%\n"
                                      "ERROR: Unable to place cell 'x'\n")
    assert _diagnosis(tmp_path) == ("the design does not fit the FPGA: ICESTORM_LC 12215/5280, "
                                    "ICESTORM_RAM 36/30")
    (tmp_path / "top.tim").write_text("ERROR: Max frequency for clock 'clk': 61.64 MHz\n")
    assert _diagnosis(tmp_path) == "Max frequency for clock 'clk': 61.64 MHz"
    # Yosys stopped: its error, not that of the nextpnr log an earlier build left.
    (tmp_path / "top.rpt").write_text("-- Running command --\nERROR: Assert `x' failed.\n")
    assert _diagnosis(tmp_path) == "yosys failed: Assert `x' failed."


def test_program_without_a_board_fails_clearly(tmp_path):
    bitstream = tmp_path / "top.bin"
    bitstream.write_bytes(b"\xff" * 64)
    report = BuildReport("icebreaker", "icebreaker", str(bitstream), 42, 45, True, {})
    with pytest.raises(ProgramError, match="could not program the icebreaker|not installed"):
        program_board(report)
    with pytest.raises(ProgramError, match="no bitstream to program"):
        program_board(BuildReport("icebreaker", "icebreaker", None, 42, 45, True, {}))


def test_cli_names_match_the_registries():
    from spikefab.firmware.cli_args import BOARD_NAMES, PROFILE_NAMES
    from spikefab.hdl.profiles import PROFILES
    assert set(BOARD_NAMES) == set(BOARDS) and set(PROFILE_NAMES) == set(PROFILES)


def test_a_design_too_large_still_gets_a_report(tmp_path, monkeypatch, capsys):
    # nextpnr stops before placing; its log has the utilisation, and the report carries it.
    from spikefab.firmware.cli import main

    def too_large(self, top, *, build_dir, **kwargs):
        directory = Path(build_dir)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "top.tim").write_text(
            "Info: Device utilisation:\n"
            "Info: \t         ICESTORM_LC:   10426/   5280   197%\n"
            "Info: \t        ICESTORM_RAM:      34/     30   113%\n"
            "Info: \t      ICESTORM_SPRAM:       4/      4   100%\n"
            "ERROR: Unable to place cell 'x'\n")
        raise RuntimeError("nextpnr failed")

    from amaranth_boards.icebreaker import ICEBreakerPlatform as platform_class
    monkeypatch.setattr(platform_class, "build", too_large)
    report = build_board("icebreaker", build_dir=tmp_path)
    assert report.bitstream is None and not report.fits() and not report.timing_met
    assert report.resources["logic_cells"] == {"used": 10426, "available": 5280}
    assert report.resources["spram"] == {"used": 4, "available": 4}
    assert "does NOT fit" in str(report)
    assert main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path), "--json"]) != 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["bitstream"] is None and printed["resources"]["ebr"]["used"] == 34
    assert "does not fit the icebreaker's FPGA: logic_cells 10,426/5,280, ebr 34/30" \
        in captured.err
    # A failure that is not about size stays an error naming nextpnr's complaint.
    (tmp_path / "icebreaker" / "top.tim").write_text("ERROR: something else\n")

    def broken(self, top, *, build_dir, **kwargs):
        raise RuntimeError("nextpnr failed")

    monkeypatch.setattr(platform_class, "build", broken)
    with pytest.raises(Exception, match="something else"):
        build_board("icebreaker", build_dir=tmp_path)
