"""The package's layering holds: each module imports only from layers below its own, no import cycles
(the contracts in pyproject.toml, checked by import-linter)."""

import shutil
import subprocess

import pytest

from conftest import ROOT


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e .[test])")
    res = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 3 kept, 0 broken." in res.stdout
