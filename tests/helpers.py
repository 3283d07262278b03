"""Shared builders for the unit tests (plain data, no I/O)."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

from canary_operator import models

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "web.yaml"


def example_rollout() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text()))


def example_spec(**analysis: Any) -> models.CanaryRolloutSpec:
    raw = copy.deepcopy(example_rollout()["spec"])
    raw["analysis"].update(analysis)
    return models.parse_spec(raw)
