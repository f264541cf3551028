"""boards/logic_depth.py: LUT depth and delay estimates of an iCE40 netlist."""

import json

import numpy as np
import pytest

from spikefab.boards.logic_depth import UP5K, depth_report, logic_depths, main, module_of


def _lut(name, inputs, out):
    ports = dict(zip(("I0", "I1", "I2", "I3"), inputs))
    return name, {"type": "SB_LUT4",
                  "connections": {**{p: [b] for p, b in ports.items()}, "O": [out]},
                  "port_directions": {**{p: "input" for p in ports}, "O": "output"}}


def _dff(name, d, q):
    return name, {"type": "SB_DFF", "connections": {"C": [1], "D": [d], "Q": [q]},
                  "port_directions": {"C": "input", "D": "input", "Q": "output"}}


def _carry(name, ci, i0, co):
    return name, {"type": "SB_CARRY", "connections": {"CI": [ci], "I0": [i0], "I1": ["0"],
                                                      "CO": [co]},
                  "port_directions": {"CI": "input", "I0": "input", "I1": "input",
                                      "CO": "output"}}


def _netlist(*cells):
    return {"modules": {"top": {"cells": dict(cells)}}}


def _chain(depth, *, fanout=False, offset=0):
    """A flip-flop, ``depth`` LUTs each fed by the one before (on I3), a flip-flop; with
    ``fanout`` the last LUT also feeds a second flip-flop, so it cannot share a cell."""
    q, cells, bit = 100 + offset, [_dff(f"m{offset}.a_SB_DFF", 99, 100 + offset)], 100 + offset
    for i in range(depth):
        cells.append(_lut(f"m{offset}.l{i}_SB_LUT4", ["0", "0", "0", bit], 200 + offset + i))
        bit = 200 + offset + i
    cells.append(_dff(f"m{offset}.b_SB_DFF", bit, 300 + offset))
    if fanout:
        cells.append(_dff(f"m{offset}.c_SB_DFF", bit, 301 + offset))
    return cells, q


@pytest.mark.parametrize("depth", [1, 2, 5, 9])
def test_a_chain_of_luts_is_as_deep_as_it_is(depth):
    cells, _ = _chain(depth)
    [end] = [e for e in logic_depths(_netlist(*cells)) if e.cell.endswith("b_SB_DFF")]
    # The last LUT shares the flip-flop's logic cell: it is counted as the setup.
    assert end.luts == depth - 1, depth
    want = (UP5K["clk_to_q"] + depth * UP5K["route"] + (depth - 1) * UP5K["lut"]["I3"]
            + UP5K["setup"])
    assert end.delay_ns == pytest.approx(want), depth
    assert end.path == [f"m0.l{i}_SB_LUT4" for i in range(depth)]


def test_a_lut_that_feeds_two_flip_flops_counts_in_full():
    cells, _ = _chain(3, fanout=True)
    ends = [e for e in logic_depths(_netlist(*cells)) if e.port == "D" and e.luts]
    assert sorted(e.luts for e in ends) == [3, 3]
    want = UP5K["clk_to_q"] + 4 * UP5K["route"] + 3 * UP5K["lut"]["I3"] + UP5K["setup"]
    assert all(e.delay_ns == pytest.approx(want) for e in ends)


def test_a_carry_chain_costs_its_bits_not_routes(base_seed):
    bits = int(np.random.default_rng(base_seed).integers(2, 20))
    cells = [_dff("a_SB_DFF", 99, 100)]
    carry_in = 100
    for i in range(bits):
        cells.append(_carry(f"c{i}_SB_CARRY", carry_in, 100, 400 + i))
        carry_in = 400 + i
    cells.append(_lut("x_SB_LUT4", [carry_in, "0", "0", "0"], 500))
    cells.append(_dff("b_SB_DFF", 500, 501))
    cells.append(_dff("c_SB_DFF", 500, 502))
    [end, _] = [e for e in logic_depths(_netlist(*cells)) if e.luts]
    assert (end.luts, end.carries) == (1, bits), base_seed
    # Into the chain on I0 (a route and 0.68 ns), then CI to CO: no route.
    want = (UP5K["clk_to_q"] + UP5K["route"] + UP5K["carry"]["I0"]
            + (bits - 1) * UP5K["carry"]["CI"] + UP5K["route"] + UP5K["lut"]["I0"]
            + UP5K["route"] + UP5K["setup"])
    assert end.delay_ns == pytest.approx(want), base_seed


def test_the_report_names_the_late_modules_and_the_deepest_path():
    deep, _ = _chain(12, fanout=True, offset=0)
    shallow, _ = _chain(2, fanout=True, offset=1000)
    report = depth_report(logic_depths(_netlist(*deep, *shallow)), 40)
    assert "2 estimated over 25.00 ns (40 MHz)" in report
    assert "| m0 | 2 | 12 |" in report and "| m1000 |" not in report
    assert "deepest: 12 LUTs" in report and "m0.l11_SB_LUT4" in report


def test_module_names_come_from_the_cells_names():
    assert module_of("system.link.executor.remaining_SB_DFFESR_Q_3") == "system.link.executor"
    assert module_of("$auto$ice40_dff.cc:1") == "(top)"


def test_bad_netlists_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="no module 'top'"):
        logic_depths({"modules": {"other": {"cells": {}}}})
    loop = _netlist(_lut("p_SB_LUT4", [201, "0", "0", "0"], 200),
                    _lut("q_SB_LUT4", [200, "0", "0", "0"], 201),
                    _dff("r_SB_DFF", 201, 202), _dff("s_SB_DFF", 201, 203))
    with pytest.raises(ValueError, match="combinational loop"):
        logic_depths(loop)
    path = tmp_path / "top.json"
    path.write_text(json.dumps({"modules": {}}))
    with pytest.raises(SystemExit) as exit_:
        main([str(path)])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.json")])
