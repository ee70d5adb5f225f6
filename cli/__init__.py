"""mlinfra (import name of cli/): the `mlinfra` CLI and the notebook API over the registry and the stacks.

In a notebook:

    import mlinfra
    version = mlinfra.register(model, X_train, name="cancer", metrics={"accuracy": 0.97})
    endpoint = mlinfra.serve("cancer")
    endpoint.predict(X_test[:3])
    mlinfra.promote("cancer", to="dev")
    mlinfra.versions("cancer")

The functions live in mlinfra.notebook and load on first use, so `import mlinfra` (and `mlinfra --help`) stays
instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["promote", "register", "serve", "versions"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("mlinfra.notebook"), name)
    raise AttributeError(f"module 'mlinfra' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
