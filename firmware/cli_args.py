"""What the ``spikefab`` command's options accept, and the checks made before any work starts:
argparse types, the chip and board choices, output and build folders (``firmware/cli.py`` has
the commands)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..boards.top import BOARDS
from ..hdl.abi import ResetMode
from ..hdl.profiles import PROFILES
from .compiler import DEFAULT_PROFILE, GENERATED

PROFILE_NAMES = tuple(PROFILES)
BOARD_NAMES = tuple(BOARDS)
#: What ``--profile`` offers: profiles for tests only (``tiny`` fits no MNIST model) are
#: accepted where a test needs them, not offered.
USER_PROFILES = tuple(name for name, profile in PROFILES.items() if not profile.for_tests)
#: What ``compile --profile`` and ``run --profile`` offer: a named chip, or one generated for
#: the network.
CHIP_CHOICES = (*USER_PROFILES, GENERATED)
PROFILE_HELP = (f"the chip the model is compiled for: a named chip, or {GENERATED!r} for one "
                f"generated for the network (default: {DEFAULT_PROFILE} if the network fits "
                f"it, else a generated chip)")
RESET_NAMES = tuple(mode.name.lower() for mode in ResetMode)


class CommandError(Exception):
    """A failure the user can act on: printed without a traceback, exit status 1."""


def _int_at_least(lo: int, what: str):
    """An argparse type: an integer ``>= lo`` (``what`` says so in the message)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _int_from(lo: int, hi: int):
    """An argparse type: an integer from ``lo`` to ``hi``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, "
                                             f"got {text!r}")
        return value
    return parse


def _hidden_sizes(text: str):
    """An argparse type: ``H`` or ``H1,H2,...``, each a positive integer."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or a comma-separated "
                                         f"list of them (e.g. 256,128), not {text!r}")
    return sizes[0] if len(sizes) == 1 else sizes


def _probability(text: str) -> float:
    """An argparse type: a fraction in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text!r}")
    return value


def _positive_number(unit: str = ""):
    """An argparse type: a finite number > 0 (``unit`` names it in the message)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive number{unit}, got {text!r}")
        return value
    return parse


def _workers(text: str) -> int | str:
    """An argparse type: ``--workers`` (firmware.shard.parse_workers)."""
    from .shard import parse_workers
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _target(text: str) -> str:
    """An argparse type: a target's name (firmware.targets)."""
    from .targets import Target
    try:
        return str(Target.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _compile_profile(text: str) -> str:
    """An argparse type: a user profile, ``generated``, or (not offered) a test profile."""
    if text in PROFILE_NAMES or text == GENERATED:
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from "
                                     f"{', '.join(map(repr, CHIP_CHOICES))})")


def _run_profile(text: str) -> str:
    """An argparse type: a user profile or ``generated``."""
    if text in CHIP_CHOICES:
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from "
                                     f"{', '.join(map(repr, CHIP_CHOICES))})")


def _check_output(path: str, flag: str, suffix: str) -> None:
    """Before the work: ``path`` can be written (its folder exists and takes a file; it is
    not a folder itself). Raises CommandError naming ``flag`` and what to do; ``suffix`` is
    the file type's, for the example."""
    import tempfile
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"{flag} {path} is a folder; give a file name, e.g. "
                           f"{target / ('NAME' + suffix)}")
    folder = target.parent
    if not folder.is_dir():
        raise CommandError(f"{flag} {path}: folder {folder} does not exist; create it first "
                           f"(mkdir -p {folder}) or give a path in an existing folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CommandError(f"{flag} {path}: cannot write in folder {folder} "
                           f"({exc.strerror or exc}); give a path in a folder you can write "
                           f"to") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise CommandError(f"{flag} {path}: the file exists and is read-only; remove it or "
                           f"give another path")


def _check_folder(folder: Path, what: str, fix: str) -> None:
    """Before the work: ``folder`` exists or can be made, and takes files."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CommandError(f"cannot use {folder} as {what} ({exc.strerror or exc}); "
                           f"{fix}") from None


def _check_build_root() -> Path:
    """The RTL simulations' build folder (sim.runner.build_dir_root) is usable, before a
    simulation starts."""
    from ..sim.runner import build_dir_root
    root = build_dir_root()
    if "SPIKEFAB_BUILD_DIR" in os.environ:
        fix = "set SPIKEFAB_BUILD_DIR to a folder you can write to"
    else:
        fix = ("run spikefab from a folder you can write to (builds go to ./build), or set "
               "SPIKEFAB_BUILD_DIR to one")
    _check_folder(root, "the build folder of the RTL simulations", fix)
    return root


def _rtl_cached(label: str, *, harness: bool = False) -> bool:
    """Whether the RTL simulation ``label`` (sim.runner.RTLBuild's label) has been built
    before: a ``LABEL-SIMULATOR-HASH/built.stamp`` under the build folder for a cocotb bench,
    ``LABEL-verilator-harness-KEY/built.stamp`` for the C++ harness of the ``sim`` target
    (``harness``). The hash (of the design's Verilog) is not checked, so a changed design may
    still rebuild."""
    from ..sim.runner import build_dir_root, simulator_name
    root = build_dir_root() / "rtl"
    if harness:
        return any(root.glob(f"{label}-verilator-harness-*/built.stamp"))
    return any("-harness-" not in stamp.parent.name
               for stamp in root.glob(f"{label}-{simulator_name()}-*/built.stamp"))


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
