"""The operator's wheel, built from the repository as `pip wheel .` builds it: the operator and nothing else."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import helpers
import pytest


@pytest.mark.slow  # builds a wheel with pip: half a minute
def test_the_operator_wheel_holds_the_operator_package_only(tmp_path: pathlib.Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=helpers.ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("canary_operator-*.whl")
    top_level = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    packages = {name for name in top_level if not name.endswith(".dist-info")}
    assert packages == {"canary_operator"}, f"the wheel carries more than the operator: {sorted(packages)}"
    assert "canary_operator/py.typed" in zipfile.ZipFile(wheel).namelist()
