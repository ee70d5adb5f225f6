"""Every command has help text with examples, and `mlinfra --help` imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from mlinfra.main import COMMANDS, cli


def all_commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            found.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(cli, ())
    return found


def test_every_registered_command_resolves() -> None:
    top = {path[0] for path in all_commands()}
    assert top == set(COMMANDS)


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_with_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout, f"mlinfra {' '.join(path)} --help has no examples"
    assert "mlinfra " + path[0] in result.stdout


HEAVY = (
    "pulumi",
    "pulumi_aws",
    "boto3",
    "botocore",
    "moto",
    "sagemaker",
    "scipy",
    "pydantic",
    "mlinfra_infra",
    "uvicorn",
    "starlette",
    "sklearn",
)


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from mlinfra.main import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0\n"
        "from mlinfra.main import COMMANDS\n"
        "for name in COMMANDS:\n"
        "    assert CliRunner().invoke(cli, [name, '--help']).exit_code == 0, name\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"heavy modules imported by --help: {out}"
