"""Builders of stack config for tests: valid pins, a minimal stage, deep merge."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

PROJECT = "mlinfra"
REGION = "eu-west-1"
IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/sklearn-inference:1.2-1-cpu-py3"


def digest_of(text: str) -> str:
    """A well-formed digest for test pins."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def pin(model: str = "churn", version: int = 3, stage: str = "dev") -> dict[str, Any]:
    """A valid `pinned` block as `mlinfra promote` would write it."""
    digest = digest_of(f"{model}-{version}")
    return {
        "version": version,
        "digest": digest,
        "image": IMAGE,
        "artifact": f"s3://{PROJECT}-{stage}-123456789012-{REGION}/models/{model}/sha256/{digest[7:]}/model.tar.gz",
    }


def base_config(stage: str = "dev") -> dict[str, Any]:
    """Minimal valid flat config for a stage: region, owner, stages, one declared (unpinned) model."""
    return {
        "aws:region": REGION,
        "mlinfra:owner": "ml-platform",
        "mlinfra:stages": ["sandbox", "dev", "staging", "prod"],
        "mlinfra:models": {"churn": {}},
    }


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge override into a copy of base."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
