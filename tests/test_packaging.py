"""Packaging: `make` installs the project in editable mode; that build should print no setuptools warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_EDITABLE = (
    "import sys, warnings; warnings.simplefilter('always'); "
    "from setuptools import build_meta; print(build_meta.build_editable(sys.argv[1]))"
)


def test_the_editable_build_prints_no_setuptools_warning(tmp_path: Path) -> None:
    # the same PEP 660 hook that `pip install -e .` calls, with every warning shown
    result = subprocess.run(
        [sys.executable, "-c", BUILD_EDITABLE, str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / result.stdout.strip().splitlines()[-1]).is_file()
    assert "Warning" not in result.stderr and "InformationOnly" not in result.stderr, result.stderr
