"""Shared test set-up: one base seed per run (printed, overridable) and the bit-exact tally."""

import contextlib
import gc
import json
import os
import re
import traceback
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from spikefab.hdl.abi import ESC
from spikefab.sim.runner import build_dir_root

#: Every randomized test derives its seeds from this; set SPIKEFAB_TEST_SEED to explore others.
BASE_SEED = int(os.environ.get("SPIKEFAB_TEST_SEED", "20261123"))
STATS_DIR = build_dir_root() / "test-stats"


def pytest_report_header(config):
    return f"spikefab: SPIKEFAB_TEST_SEED={BASE_SEED} (set it to rerun with other seeds)"


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller, not an xdist worker
        STATS_DIR.mkdir(parents=True, exist_ok=True)
        for stale in STATS_DIR.glob("*.json"):
            stale.unlink()


def ends_inside_escape(raw: bytes) -> bool:
    """Whether SLIP bytes ``raw`` end between an ESC and the byte it escapes."""
    escaped = False
    for byte in raw:
        escaped = (not escaped) and byte == ESC
    return escaped


def record_checked(name: str, **counts: int) -> None:
    """Add to the run's tally of what was checked bit-exact against the golden model."""
    STATS_DIR.mkdir(parents=True, exist_ok=True)
    (STATS_DIR / f"{name}.json").write_text(json.dumps(counts))


def pytest_terminal_summary(terminalreporter):
    totals = {}
    for path in STATS_DIR.glob("*.json"):
        for key, value in json.loads(path.read_text()).items():
            totals[key] = totals.get(key, 0) + value
    if totals:
        terminalreporter.section("checked bit-exact against the golden model (RTL)")
        for key, value in sorted(totals.items()):
            terminalreporter.write_line(f"{key}: {value:,}")


@pytest.fixture
def base_seed():
    return BASE_SEED


@contextlib.contextmanager
def raises_in_constructor(error, match):
    """``pytest.raises`` for an Amaranth component's constructor, without the warning that the
    half-built object was never elaborated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            yield
        except error as exc:
            assert re.search(match, str(exc)), f"{str(exc)!r} does not match {match!r}"
            traceback.clear_frames(exc.__traceback__)  # they hold the half-built object
        else:
            pytest.fail(f"DID NOT RAISE {error.__name__}")
        gc.collect()
