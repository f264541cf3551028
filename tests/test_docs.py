"""The repository carries its own contract: every path its text cites exists in it.

Scans the repository's text files (tracked ones, and new ones not ignored by git) for what
looks like a citation of a repository file: a path under one of the top-level folders
(``hdl``, ``sim``, ``firmware``, ``boards``, ``tests``, ``docs``), a bare Markdown file name,
or a relative Markdown link, each with an optional ``#section``. A cited path must exist
(relative to the repository root, or for Markdown names and links also to the citing file's
folder), and a cited section must be a heading of the Markdown file it names. The design and
toolchain notes kept outside the repository must not be cited at all: what the project relies
on from them is in docs/semantics.md and docs/toolchain.md.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

#: The repository's top-level folders: a token that starts with one of them is a path in it.
FOLDERS = ("hdl", "sim", "firmware", "boards", "tests", "docs")

#: Notes kept outside the repository (spelt in two parts so that this file does not cite them).
OUTSIDE_NOTES = ("DESIGN" + ".md", "TOOLCHAIN" + ".md")

#: Which files are text to scan: by suffix, or by exact path.
SUFFIXES = (".py", ".md", ".toml")
NAMES = ("Makefile", ".ci/run")

# Neither kind of token may continue a longer path or a URL (``spikefab/sim/x.py``,
# ``https://example.org/docs/a.md``, ``../shared/x.md``), hence the look-behind.
_EDGE = r"(?<![\w./~:-])"
_ANCHOR = r"(?:#([\w-]+))?"
PATH_TOKEN = re.compile(_EDGE + r"((?:" + "|".join(FOLDERS) + r")/[\w./-]*)" + _ANCHOR)
MD_NAME = re.compile(_EDGE + r"([\w-]+\.md)(?![\w])" + _ANCHOR)
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def text_files() -> list[str]:
    """Repository-relative paths of the text files to scan (not this one: its strings are the
    scan's own test cases)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = sorted({p for p in out.split("\0") if p})
    return [p for p in files if p != SELF
            and (p.endswith(SUFFIXES) or p in NAMES) and (ROOT / p).is_file()]


def slug(heading: str) -> str:
    """The anchor a Markdown heading gets (GitHub's rule: lower case, punctuation dropped,
    spaces to hyphens)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The section anchors of a Markdown file (headings inside code fences do not count)."""
    found, fenced = set(), False
    for line in path.read_text(errors="replace").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            found.add(slug(m.group(1)))
    return found


def citations(text: str, citing: str) -> list[tuple[int, str, str | None, bool]]:
    """``(line, path, section, relative_ok)`` for every citation in ``text`` of the file at
    ``citing``; ``relative_ok``: the path may also be relative to the citing file's folder."""
    found = []
    is_markdown = citing.endswith(".md")
    for number, line in enumerate(text.splitlines(), 1):
        seen = set()

        def add(path, section, relative_ok):
            path = path.rstrip(".,;:")
            if path and (path, section) not in seen:
                seen.add((path, section))
                found.append((number, path, section, relative_ok))

        for m in PATH_TOKEN.finditer(line):
            add(m.group(1), m.group(2), False)
        for m in MD_NAME.finditer(line):
            add(m.group(1), m.group(2), True)
        if is_markdown:
            for m in MD_LINK.finditer(line):
                target = m.group(1)
                if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue   # a URL, or a section of the same file
                path, _, section = target.partition("#")
                add(path, section or None, True)
    return found


def problems_in(text: str, citing: str, root: Path = ROOT) -> list[str]:
    """What is wrong with the citations in ``text`` (of the file ``citing``), one line each."""
    out = []
    folder = (root / citing).parent
    for number, path, section, relative_ok in citations(text, citing):
        where = f"{citing}:{number}"
        if Path(path).name in OUTSIDE_NOTES:
            out.append(f"{where}: cites {path}, a note outside the repository; cite "
                       f"docs/semantics.md or docs/toolchain.md instead")
            continue
        candidates = [root / path] + ([folder / path] if relative_ok else [])
        target = next((c for c in candidates if c.exists()), None)
        if target is None:
            out.append(f"{where}: cites {path}, which is not in the repository")
        elif section and target.suffix == ".md" and section not in anchors(target):
            out.append(f"{where}: cites {path}#{section}, but {path} has no such section")
    return out


def test_cited_paths_exist():
    problems = []
    for name in text_files():
        problems += problems_in((ROOT / name).read_text(errors="replace"), name)
    assert not problems, "broken citations:\n" + "\n".join(problems)


def test_notes_outside_the_repository_are_not_cited():
    cited = []
    for name in text_files():
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            for note in OUTSIDE_NOTES:
                if re.search(r"(?<![\w-])" + re.escape(note), line):
                    cited.append(f"{name}:{number}: cites {note}")
    assert not cited, "the contract lives in docs/ now:\n" + "\n".join(cited)


def test_the_contract_is_in_the_repository():
    for name in ("semantics.md", "toolchain.md"):
        assert (ROOT / "docs" / name).is_file(), f"docs/{name} is missing"
    golden = (ROOT / "sim" / "golden.py").read_text().splitlines()[0]
    assert "docs/semantics.md" in golden, "sim/golden.py must name the spec it implements"


@pytest.mark.parametrize("line, expected", [
    ("see hdl/nowhere.py for it", "cites hdl/nowhere.py, which is not in the repository"),
    ("rule 2 of " + OUTSIDE_NOTES[0], "a note outside the repository"),
    ("[x](no-such-page.md)", "cites no-such-page.md, which is not in the repository"),
    ("docs/semantics.md#no-such-section", "has no such section"),
])
def test_the_scan_finds_broken_citations(line, expected):
    problems = problems_in(f"first line\n{line}\n", "docs/example.md")
    assert problems and all(p.startswith("docs/example.md:2: ") for p in problems)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("line", [
    "https://amaranth-lang.org/docs/amaranth/latest/index.md",
    "writes net.npz and top.rpt into build/boards/icebreaker",
    "spikefab/sim/golden.py is the installed name of sim/golden.py.",
    "[semantics](semantics.md#delivery) and [the README](../README.md)",
])
def test_the_scan_passes_what_is_not_a_broken_citation(line):
    assert problems_in(line, "docs/example.md") == []
