"""Importing the uncompiled source folder fails with a message that names the two fixes."""

import shutil
import subprocess
import sys
from pathlib import Path

import lowrank_core


def test_import_from_uncompiled_source_folder_says_what_happened(tmp_path):
    # A copy of the package's Python files only, laid out like the repository root
    # (meson.build and src/ beside it), imported with site-packages disabled (-S) so no
    # installed or editable lowrank_core can be found: exactly what a user in the root of
    # a checkout sees after a non-editable install.
    package = Path(lowrank_core.__file__).resolve().parent
    shutil.copytree(package, tmp_path / "lowrank_core",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    (tmp_path / "meson.build").write_text("")
    (tmp_path / "src").mkdir()
    proc = subprocess.run([sys.executable, "-S", "-c", "import lowrank_core"],
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: lowrank_core was imported from its uncompiled "
                           "source folder")
    assert "run Python from another folder" in last
    assert "pip install --no-build-isolation -e ." in last
    assert "circular import" not in proc.stderr
