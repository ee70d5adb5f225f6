"""The shell and Python blocks of the README and docs/ pages, as a test runs them (tests/test_docs.py).

A fenced block whose language is `sh`, `bash`, `shell` or `console` is a shell block, `python` a Python block. The
HTML comment on the line before a block says how to treat it (it does not show on a rendered page):

    <!-- not run: REASON -->   a block that cannot run here (needs AWS, the pulumi CLI, a forge); its `mlinfra`
                               lines are still parsed by the CLI and its `make` targets looked up in the Makefile
    <!-- exits N -->           every command of the block exits N (e.g. 3, a refused promotion or drift)

Every other shell and Python block of a page runs, in page order, in one scratch project per page; a page without
runnable blocks is only parsed. `$ ` prompts are stripped; `#` comments and blank lines are skipped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL = frozenset({"sh", "bash", "shell", "console"})
_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_MARK = re.compile(r"<!--\s*(?P<kind>not run|exits)\s*:?\s*(?P<value>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its page and line, language, text, and how the test treats it."""

    page: Path
    line: int
    lang: str
    text: str
    skip_reason: str | None
    exit_code: int

    @property
    def shell(self) -> bool:
        """Whether it is a shell block."""
        return self.lang in SHELL

    def where(self) -> str:
        """page:line, for messages."""
        return f"{self.page.name}:{self.line}"

    def commands(self) -> list[str]:
        """The block's commands: lines joined at trailing backslashes, prompts and comments removed."""
        joined: list[str] = []
        pending = ""
        for raw in self.text.splitlines():
            line = raw.rstrip()
            if not pending:
                line = line.lstrip()
                if line.startswith("$ "):
                    line = line[2:]
                if not line or line.startswith("#"):
                    continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            joined.append(strip_comment(pending + line))
            pending = ""
        if pending:
            joined.append(strip_comment(pending))
        return joined


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` outside quotes, after whitespace), stripped."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].strip()
    return line.strip()


def blocks(page: Path) -> list[Block]:
    """Every shell and Python block of a Markdown page, in order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        lang = match["lang"].lower()
        if lang not in SHELL and lang != "python":
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        skip = mark["value"] or "no reason given" if mark and mark["kind"] == "not run" else None
        exit_code = int(mark["value"]) if mark and mark["kind"] == "exits" else 0
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, lang, match["body"], skip, exit_code))
    return found


def mlinfra_arguments(command: str) -> list[str] | None:
    """The arguments of an `mlinfra ...` command (None for another program); environment assignments skipped."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words = words[1:]
    if not words or words[0] != "mlinfra":
        return None
    for stop in ("|", "&&", "||", ";", ">", "2>&1"):
        if stop in words:
            words = words[: words.index(stop)]
    return words[1:]


def make_targets(makefile: Path) -> set[str]:
    """The targets a Makefile defines."""
    text = makefile.read_text(encoding="utf-8")
    return {m[1] for m in re.finditer(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.MULTILINE)}


def script(page_blocks: list[Block], python: str) -> str:
    """One bash script running a page's runnable blocks in order; a failure names the block and exits non-zero."""
    parts = ["set -uo pipefail"]
    for number, block in enumerate(page_blocks):
        if block.skip_reason is not None:
            continue
        label = shlex.quote(block.where())
        if block.lang == "python":
            parts.append(f"{shlex.quote(python)} - <<'MLINFRA_DOCS_PY' || {{ echo \"FAILED {label}\" >&2; exit 1; }}")
            parts.append(block.text.rstrip("\n"))
            parts.append("MLINFRA_DOCS_PY")
            continue
        for command in block.commands():
            if command.startswith(("export ", "cd ")):
                parts.append(command)
                continue
            parts.append(f"( set -e; {command} ); status=$?")
            parts.append(
                f'[ "$status" -eq {block.exit_code} ] || {{ echo "FAILED {label} (block {number}): exit $status, '
                f'expected {block.exit_code}: "{shlex.quote(command)} >&2; exit 1; }}'
            )
    return "\n".join(parts) + "\n"
