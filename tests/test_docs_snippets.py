"""Every code block of README.md and docs/*.rst|md runs as printed.

A Python block is executed in a fresh interpreter whose working directory is a temporary
folder (never the repository root, whose uncompiled ``lowrank_core/`` would shadow the
installed package). When a block is followed directly by a ``text`` block, that block is
its printed output and must match exactly. A shell block (``bash``, ``sh``, ``console``) is
run by ``bash -euo pipefail`` in a temporary folder, after the page's earlier blocks (which
write the files it reads, e.g. ``completion.npz``), with this interpreter's ``python`` and
``lowrank-core`` first on PATH. A shell block that installs packages (``pip install``,
``python -m venv``) is not run here: ``.ci/run`` runs the README's install from a clean
clone. Any other block can opt out only with a visible marker and a reason on the line
before it: ``<!-- snippet: skip (reason) -->`` in Markdown, ``.. snippet: skip (reason)``
in reStructuredText. A reStructuredText literal block (a paragraph ending in ``::``) is
refused: it has no language, so it could be neither run nor checked; pages use
``.. code-block:: LANGUAGE``.
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


PYTHON = ("python", "py")
SHELL = ("bash", "sh", "shell", "console")
#: A shell block that changes the environment; .ci/run performs the README's install.
INSTALLS = re.compile(r"\bpip install\b|\bpython -m venv\b")


@dataclass
class Snippet:
    path: Path
    line: int  # 1-based line of the block's first code line
    code: str
    expected: str | None  # the text block printed right after it, if any
    skip: str | None  # reason, if the block is marked to be skipped
    language: str = "python"
    before: tuple = ()  # the page's earlier runnable snippets (shell blocks run after them)


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


def rst_literal_blocks(path: Path) -> list[int]:
    """1-based lines of the paragraphs ending in ``::`` that start a literal block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for i, text in enumerate(lines):
        if text.rstrip().endswith("::") and not text.lstrip().startswith(".."):
            following = next((t for t in lines[i + 1:] if t.strip()), "")
            if following[:1].isspace():
                found.append(i + 1)
    return found


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
    """Python and shell blocks; a Python block with the text block that directly follows
    it (its output); a shell block with the page's earlier ones."""
    snippets = []
    for n, (language, line, code, end, reason) in enumerate(blocks):
        if language not in PYTHON + SHELL:
            continue
        if language in SHELL:
            if reason is None and INSTALLS.search(code):
                reason = ("installs packages (not into the environment under test); .ci/run "
                          "runs the README's install from a clean clone")
            before = tuple(s for s in snippets if s.skip is None)
            snippets.append(Snippet(path, line, code, None, reason, "bash", before))
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
    shell = [s for s in SNIPPETS if s.language == "bash"]
    assert {"README.md", "cli.rst", "file_format.rst", "reproductions.rst"} <= {
        s.path.name for s in shell}
    assert sum(s.skip is None for s in shell) >= 3  # some shell blocks really run


def test_every_block_has_a_language():
    """No reStructuredText literal (``::``) block: it would be neither run nor checked."""
    found = [f"{path.name}:{line}" for path in sorted((ROOT / "docs").glob("*.rst"))
             for line in rst_literal_blocks(path)]
    assert not found, f"use '.. code-block:: LANGUAGE' instead of '::' at {found}"


def test_ci_runs_the_readme_install():
    """The README's install blocks are skipped here because .ci/run performs them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    installs = [re.search(r'pip install [^&]*"\.\[test\]"', line).group(0)
                for line in readme.splitlines()
                if line.startswith("python -m venv") and '".[test]"' in line]
    assert installs, "the README's test set-up command was not found"
    for command in installs:
        assert command in ci, f".ci/run does not run the README's {command!r}"


def test_skip_markers_give_a_reason():
    for s in SNIPPETS:
        if s.skip is not None:
            assert s.skip.strip(), f"{s.path.name}:{s.line}: a skipped block needs a reason"


@pytest.mark.parametrize(
    "snippet", SNIPPETS, ids=[f"{s.path.name}:{s.line}" for s in SNIPPETS])
def test_snippet_runs_as_printed(snippet: Snippet, tmp_path):
    if snippet.skip is not None:
        pytest.skip(f"{snippet.path.name}: {snippet.skip}")
    env = dict(os.environ, PYTHONWARNINGS="default", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    # the interpreter running the tests provides `python` and `lowrank-core`
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    for earlier in snippet.before:  # the files the page's earlier blocks write
        proc = _run(earlier, tmp_path, env)
        assert proc.returncode == 0, (f"{earlier.path.name}:{earlier.line} (run before "
                                      f"line {snippet.line}) failed:\n{proc.stderr[-3000:]}")
    proc = _run(snippet, tmp_path, env)
    where = f"{snippet.path.relative_to(ROOT)}:{snippet.line}"
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"
    if snippet.expected is not None:
        got = [t.rstrip() for t in proc.stdout.rstrip().splitlines()]
        want = [t.rstrip() for t in snippet.expected.rstrip().splitlines()]
        assert got == want, f"{where}: printed output differs from the documented output"


def _run(snippet: Snippet, cwd, env) -> subprocess.CompletedProcess:
    if snippet.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", snippet.code]
    else:
        command = [sys.executable, "-c", snippet.code]
    return subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


# --------------------------------------------------------------- the demo's printed table
DEMO_ROW = re.compile(r"^\s*(?:\$ )?(?P<label>\S.*?)\s{2,}(?P<iterations>\d+)\s+"
                      r"(?P<time>\d+\.\d+)\s+(?P<error>\d\.\d+e[+-]\d+)\s+(?P<status>[a-z_]+)$")


def _demo_rows(text: str) -> list[tuple[str, int, str, str]]:
    """(method, iterations, rel. error, status) of each row of a demo table; the time
    column is left out (it is the documenting machine's)."""
    rows = []
    for line in text.splitlines():
        match = DEMO_ROW.match(line)
        if match:
            rows.append((match["label"], int(match["iterations"]), match["error"],
                         match["status"]))
    return rows


def _documented_demo_tables() -> dict[str, str]:
    """The README's and cli.rst's text blocks that show ``lowrank-core demo``'s table."""
    tables = {}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```text\n(.*?)```", readme, flags=re.S):
        if block.lstrip().startswith("method ") and "iterations" in block:
            tables["README.md"] = block
    cli = (ROOT / "docs" / "cli.rst").read_text(encoding="utf-8")
    match = re.search(r"\n   \$ lowrank-core demo\n(.*?)\n(?=\S)", cli, flags=re.S)
    if match:
        tables["cli.rst"] = match.group(1)
    return tables


def test_demo_table_is_printed_as_documented(tmp_path):
    """README's and cli.rst's demo tables: the iterations, errors and statuses that
    ``lowrank-core demo`` prints on 2 threads (the documented run); not the times."""
    tables = _documented_demo_tables()
    assert set(tables) == {"README.md", "cli.rst"}, sorted(tables)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-m", "lowrank_core", "demo", "--threads", "2"],
                          check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = _demo_rows(proc.stdout)
    assert len(printed) == 5, proc.stdout
    for name, table in tables.items():
        assert _demo_rows(table) == printed, f"{name}'s demo table differs:\n{proc.stdout}"


def test_solvers_page_shows_solves_signature():
    """The signature at the top of docs/solvers.rst (a text block) is solve's: the same
    parameters, in the same order, with the same defaults."""
    import ast
    import inspect

    import lowrank_core as lc

    text = (ROOT / "docs" / "solvers.rst").read_text(encoding="utf-8")
    match = re.search(r"lc\.solve\((?P<params>.*?)\)\s*\n\s*-> (?P<ret>\w+)", text, flags=re.S)
    assert match, "docs/solvers.rst: the lc.solve(...) -> SolveResult block was not found"
    documented = ast.parse(f"def solve({match['params']}): pass").body[0].args
    names = [a.arg for a in documented.args] + ["**" + documented.kwarg.arg]
    defaults = [ast.literal_eval(d) for d in documented.defaults]
    defaults = [inspect.Parameter.empty] * (len(documented.args) - len(defaults)) + defaults
    sig = inspect.signature(lc.solve)
    actual = [("**" if p.kind is p.VAR_KEYWORD else "") + n for n, p in sig.parameters.items()]
    assert names == actual
    assert defaults == [p.default for p in sig.parameters.values()
                        if p.kind is not p.VAR_KEYWORD]
    assert match["ret"] == sig.return_annotation == "SolveResult"
