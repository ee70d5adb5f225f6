"""The project's exceptions: each carries the exit code the CLI documents (see README, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


class MlinfraError(Exception):
    """Base of every error mlinfra reports as one line; raised for an operation that failed (exit 1)."""

    exit_code = EXIT_FAILED


class BadInputError(MlinfraError):
    """Raised for bad usage or input: unknown stage or model, invalid stack config, malformed files (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class RefusedError(MlinfraError):
    """Raised when a gate, policy, budget or drift threshold refuses the operation (exit 3).

    `failed` lists what refused it (e.g. the failing gates as `{"gate", "passed", "reason"}`); with `--json` the CLI
    prints them as a JSON object on stdout.
    """

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, failed: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.failed = failed or []


class ToolMissingError(MlinfraError):
    """Raised when an external tool (the `pulumi` CLI) that a command needs is not installed (exit 1)."""
