"""docs/index.rst shows the README's two set-up commands verbatim (issue 17): the README's
are the ones .ci/run executes and whose times the README reports."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _setup_lines(path):
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("python -m venv .venv")]


def test_docs_index_setup_commands_are_the_readmes():
    readme = _setup_lines(ROOT / "README.md")
    assert len(readme) == 2 and all("-Cbuild-dir=build/pip" in c for c in readme)
    assert _setup_lines(ROOT / "docs" / "index.rst") == readme
