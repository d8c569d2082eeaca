"""Every Python code block of README.md and docs/*.rst|md runs as printed.

A block is executed in a fresh interpreter whose working directory is a temporary folder
(never the repository root, whose uncompiled ``lowrank_core/`` would shadow the installed
package). When a block is followed directly by a ``text`` block, that block is its printed
output and must match exactly. A block can opt out only with a visible marker and a reason
on the line before it: ``<!-- snippet: skip (reason) -->`` in Markdown,
``.. snippet: skip (reason)`` in reStructuredText.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"snippet:\s*skip\s*\((?P<reason>[^)]*)\)")
TIMEOUT = 300  # seconds per block; the blocks run at small sizes (a few seconds each)


@dataclass
class Snippet:
    path: Path
    line: int  # 1-based line of the block's first code line
    code: str
    expected: str | None  # the text block printed right after it, if any
    skip: str | None  # reason, if the block is marked to be skipped


def _dedent_rst(lines: list[str], start: int) -> tuple[str, int]:
    """The indented body of an rst directive whose options/blank line start at ``start``."""
    i = start
    while i < len(lines) and lines[i].strip().startswith(":"):  # directive options
        i += 1
    body: list[str] = []
    indent = None
    while i < len(lines):
        text = lines[i]
        if text.strip() == "":
            body.append("")
            i += 1
            continue
        width = len(text) - len(text.lstrip())
        if indent is None:
            if width == 0:
                break
            indent = width
        if width < indent:
            break
        body.append(text[indent:])
        i += 1
    while body and body[-1] == "":
        body.pop()
    while body and body[0] == "":
        body.pop(0)
    return "\n".join(body) + "\n", i


def rst_snippets(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").splitlines()
    directive = re.compile(r"^\s*\.\. (?:code-block|code|sourcecode)::\s*(\S+)\s*$")
    blocks = []  # (language, first code line, code, end index, skip reason)
    i = 0
    while i < len(lines):
        match = directive.match(lines[i])
        if not match:
            i += 1
            continue
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        reason = SKIP.search(previous)
        code, end = _dedent_rst(lines, i + 1)
        blocks.append((match.group(1), i + 2, code, end,
                       reason.group("reason") if reason else None))
        i = end
    return _pair(path, blocks, lines)


def markdown_snippets(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = re.match(r"^```\s*(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        reason = SKIP.search(previous)
        blocks.append((match.group(1), i + 2, "\n".join(lines[i + 1:j]) + "\n", j + 1,
                       reason.group("reason") if reason else None))
        i = j + 1
    return _pair(path, blocks, lines)


def _pair(path, blocks, lines) -> list[Snippet]:
    """Python blocks, each with the text block that directly follows it (its output)."""
    snippets = []
    for n, (language, line, code, end, reason) in enumerate(blocks):
        if language not in ("python", "py"):
            continue
        expected = None
        if n + 1 < len(blocks) and blocks[n + 1][0] in ("text", ""):
            following = blocks[n + 1]
            between = lines[end:following[1] - 2]
            if all(not t.strip() for t in between):
                expected = following[2]
        snippets.append(Snippet(path, line, code, expected, reason))
    return snippets


def all_snippets() -> list[Snippet]:
    found = markdown_snippets(ROOT / "README.md")
    for path in sorted((ROOT / "docs").glob("*.rst")):
        found += rst_snippets(path)
    for path in sorted((ROOT / "docs").glob("*.md")):
        found += markdown_snippets(path)
    return found


SNIPPETS = all_snippets()


def test_snippets_found():
    """The extraction sees the README's example and the guides' blocks (guards the parser)."""
    files = {s.path.name for s in SNIPPETS}
    assert "README.md" in files
    assert {"index.rst", "operators.rst", "solvers.rst", "dask.rst"} <= files
    assert sum(s.expected is not None for s in SNIPPETS) >= 3


def test_skip_markers_give_a_reason():
    for s in SNIPPETS:
        if s.skip is not None:
            assert s.skip.strip(), f"{s.path.name}:{s.line}: a skipped block needs a reason"


@pytest.mark.parametrize(
    "snippet", SNIPPETS, ids=[f"{s.path.name}:{s.line}" for s in SNIPPETS])
def test_snippet_runs_as_printed(snippet: Snippet, tmp_path):
    if snippet.skip is not None:
        pytest.skip(f"marked in {snippet.path.name}: {snippet.skip}")
    env = dict(os.environ, PYTHONWARNINGS="default", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", snippet.code], check=False, cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    where = f"{snippet.path.relative_to(ROOT)}:{snippet.line}"
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"
    if snippet.expected is not None:
        got = [t.rstrip() for t in proc.stdout.rstrip().splitlines()]
        want = [t.rstrip() for t in snippet.expected.rstrip().splitlines()]
        assert got == want, f"{where}: printed output differs from the documented output"
