"""Model blocks one blank line apart, so promotions of two models into one stage merge without a conflict.

git's merge refuses two changes that touch adjacent lines: pinning `churn` rewrites the line `churn: {}`, pinning
`fraud` rewrites `fraud: {}` right below it, and two promotion pull requests into the same stage conflict. With a
blank line between the blocks each edit stays inside its own block. Every stack file edit (a pin, a declared model)
ends with `separate_models`, so the blank lines are in the base both pull requests start from.
"""

from __future__ import annotations

MODELS_KEY = "mlinfra:models"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def separate_models(text: str) -> str:
    """`text` with exactly one blank line between consecutive entries of the block mapping `config.mlinfra:models`.

    Comment lines directly above an entry stay with it (the blank line goes above them); a flow mapping
    (`mlinfra:models: {a: {}}`) and a file without the key are returned unchanged.
    """
    lines = text.split("\n")
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.strip() == f"{MODELS_KEY}:"
            or line.strip().startswith(f"{MODELS_KEY}:  #")
            or line.strip().startswith(f"{MODELS_KEY}: #")
        ),
        None,
    )
    if start is None:
        return text
    parent = _indent(lines[start])
    end, child = len(lines), None
    for i in range(start + 1, len(lines)):
        if not _is_content(lines[i]):
            continue
        if _indent(lines[i]) <= parent:
            end = i
            break
        if child is None:
            child = _indent(lines[i])
    if child is None:
        return text
    entries = [i for i in range(start + 1, end) if _is_content(lines[i]) and _indent(lines[i]) == child]
    tops = []
    for n, entry in enumerate(entries):
        floor = entries[n - 1] + 1 if n else start + 1
        top = entry  # the entry's own comment lines directly above it go with it
        while top - 1 >= floor and lines[top - 1].strip().startswith("#") and _indent(lines[top - 1]) >= child:
            top -= 1
        tops.append(top)
    out = lines[: tops[0]]
    for n, top in enumerate(tops):
        block = lines[top : tops[n + 1] if n + 1 < len(tops) else end]
        if n + 1 < len(tops):
            while block and not block[-1].strip():
                block.pop()  # blank lines between entries: normalised to exactly one
            block.append("")
        out.extend(block)
    out.extend(lines[end:])
    return "\n".join(out)
