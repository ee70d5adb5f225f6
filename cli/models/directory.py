"""A model directory as `register` sees it: the files it packs, and whether its handler meets the container contract.

Skipped always: `__pycache__/`, `.ipynb_checkpoints/`, `.DS_Store`, `.git` and `.mlinfraignore` itself; skipped on
request: whatever `.mlinfraignore` at the directory's root names, in gitignore syntax (read with `pathspec`, so
negations, `**` and directory-only patterns behave as in git). An ignored directory is not descended into, as in git.

The handler is checked statically (parsed with `ast`, never imported: registering must not run user code) against
the framework's contract (`frameworks`): it must exist at `code/inference.py`, parse, define at module level the
functions the container has no default for, take the arguments the container passes, and not mix `transform_fn`
with `input_fn`/`predict_fn`/`output_fn` (both containers refuse that at start-up).
"""

from __future__ import annotations

import ast
import hashlib
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.errors import BadInputError
from mlinfra.models import frameworks

if TYPE_CHECKING:
    from mlinfra_infra.config import HandlerLayout

IGNORE_FILE = ".mlinfraignore"
ALWAYS_SKIPPED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints", ".git"})
ALWAYS_SKIPPED_FILES = frozenset({".DS_Store", ".git", IGNORE_FILE})
MAX_HANDLER_BYTES = 1 << 20  # a handler larger than 1 MiB is not a handler

Skip = Callable[[str, bool], bool]
"""Whether to leave out an entry, given its path relative to the model directory (POSIX) and whether it is a dir."""


def skipper(root: Path) -> Skip:
    """The skip rule of a model directory: the fixed names, plus its `.mlinfraignore` if it has one."""
    import pathspec

    ignore = root / IGNORE_FILE
    spec = None
    if ignore.is_file():
        try:
            lines = ignore.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError(f"{ignore}: cannot read it ({exc}); fix or remove it") from None
        spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def skip(relative: str, is_dir: bool) -> bool:
        name = relative.rsplit("/", 1)[-1]
        if name in (ALWAYS_SKIPPED_DIRS if is_dir else ALWAYS_SKIPPED_FILES):
            return True
        return spec is not None and spec.match_file(relative + "/" if is_dir else relative)

    return skip


# --- the handler ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandlerCheck:
    """What the static check found in a handler: the functions it defines at module level."""

    defined: frozenset[str]


def _init_hint(model: str, framework: str, directory: str) -> str:
    return f"`mlinfra init-model {model} --framework {framework} {directory}` writes one"


def _positional(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int, bool]:
    """(required positional parameters, all positional parameters, takes *args) of a function definition."""
    args = node.args
    positional = len(args.posonlyargs) + len(args.args)
    return positional - len(args.defaults), positional, args.vararg is not None


def _module_names(tree: ast.Module) -> tuple[dict[str, ast.FunctionDef | ast.AsyncFunctionDef], set[str]]:
    """The functions a module defines at its top level, and every name it binds there (defs, assignments, imports)."""
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions[node.name] = node
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return functions, names


def check_handler(source: bytes, framework: frameworks.Framework, where: str, hint: str) -> HandlerCheck:
    """Check a handler's source against the framework's contract; BadInputError naming the first problem."""
    try:
        tree = ast.parse(source, filename=where)
    except SyntaxError as exc:
        raise BadInputError(f"{where}:{exc.lineno}: not valid Python ({exc.msg}); fix it, or {hint}") from None
    except ValueError as exc:  # null bytes
        raise BadInputError(f"{where}: not a Python source file ({exc}); {hint}") from None
    functions, names = _module_names(tree)
    for name in framework.required:
        if name not in names:
            arguments = ", ".join(frameworks.HANDLER_ARGUMENTS[name])
            raise BadInputError(
                f"{where}: defines no {name}({arguments}), which the {framework.title} container calls and has no "
                f"default for; add it, or {hint}"
            )
    per_request = [name for name in frameworks.PER_REQUEST if name in names]
    if "transform_fn" in names and per_request:
        raise BadInputError(
            f"{where}: defines transform_fn and {', '.join(per_request)}; the container refuses both at start-up: "
            "keep transform_fn alone or drop it"
        )
    for name, node in functions.items():
        if name not in frameworks.HANDLER_ARGUMENTS:
            continue
        if isinstance(node, ast.AsyncFunctionDef):
            raise BadInputError(f"{where}:{node.lineno}: {name} is async; the container calls it synchronously")
        required, allowed, varargs = _positional(node)
        arities = framework.accepted_arities(name)
        if not any(required <= n and (varargs or n <= allowed) for n in arities):
            expected = ", ".join(frameworks.HANDLER_ARGUMENTS[name])
            extra = " (and optionally a trailing context)" if framework.context_argument else ""
            raise BadInputError(
                f"{where}:{node.lineno}: {name} takes {allowed} positional argument(s); the {framework.title} "
                f"container passes {len(frameworks.HANDLER_ARGUMENTS[name])}: ({expected}){extra}"
            )
    return HandlerCheck(defined=frozenset(names & set(frameworks.HANDLER_ARGUMENTS)))


def handler_member() -> str:
    """Where the handler sits inside model.tar.gz (and the model directory)."""
    return f"{frameworks.HANDLER_DIRECTORY}/{frameworks.PROGRAM}"


def check_directory(root: Path, framework_name: str, model: str) -> HandlerLayout:
    """Check a model directory's handler against the framework's contract; the layout `register` records."""
    from mlinfra_infra.config import HandlerLayout

    framework = frameworks.get(framework_name)
    hint = _init_hint(model, framework.name, str(root))
    member = handler_member()
    handler = root / member
    skip = skipper(root)
    if not handler.is_file() or skip(member, False) or skip(frameworks.HANDLER_DIRECTORY, True):
        raise BadInputError(
            _missing(root / frameworks.PROGRAM, member, framework, hint, str(root), ignored=(handler.is_file()))
        )
    try:
        with handler.open("rb") as stream:
            source = stream.read(MAX_HANDLER_BYTES + 1)
    except OSError as exc:
        raise BadInputError(f"{handler}: cannot read it ({exc.strerror})") from None
    if len(source) > MAX_HANDLER_BYTES:
        raise BadInputError(f"{handler}: larger than 1 MiB; a handler is code, keep model files beside it")
    check_handler(source, framework, str(handler), hint)
    return HandlerLayout(framework=framework.name, program=frameworks.PROGRAM, directory=frameworks.HANDLER_DIRECTORY)


def _missing(
    at_root: Path, member: str, framework: frameworks.Framework, hint: str, where: str, *, ignored: bool
) -> str:
    if ignored:
        return f"{where}/{member} is excluded by {IGNORE_FILE}; the {framework.title} container needs it packed"
    if at_root.is_file():
        return (
            f"{where}: the handler must be {member}, not {frameworks.PROGRAM} at the root (the {framework.title} "
            f"container imports it from /opt/ml/model/{frameworks.HANDLER_DIRECTORY}); move it there"
        )
    return f"{where}: no handler at {member}, which the {framework.title} container imports; {hint}"


def check_archive(path: Path, framework_name: str, model: str) -> HandlerLayout:
    """Check the handler inside a model.tar.gz (read in one pass, stopping at the handler) without extracting it."""
    from mlinfra_infra.config import HandlerLayout

    framework = frameworks.get(framework_name)
    hint = _init_hint(model, framework.name, "DIR") + " (then pass DIR instead of the archive)"
    member = handler_member()
    source: bytes | None = None
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for info in tar:
                if info.isreg() and _normal(info.name) == member:
                    if info.size > MAX_HANDLER_BYTES:
                        raise BadInputError(f"{path}: {member} is larger than 1 MiB; a handler is code")
                    extracted = tar.extractfile(info)
                    source = extracted.read() if extracted is not None else b""
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BadInputError(f"{path}: not a readable gzip-compressed tar ({exc})") from None
    if source is None:
        raise BadInputError(
            f"{path}: holds no {member} at its root, which the {framework.title} container imports "
            f"(an archive holds the model directory's contents: tar czf model.tar.gz -C DIR .); {hint}"
        )
    check_handler(source, framework, f"{path}:{member}", hint)
    return HandlerLayout(framework=framework.name, program=frameworks.PROGRAM, directory=frameworks.HANDLER_DIRECTORY)


def _normal(name: str) -> str:
    """A member name without a leading `./` (what `tar czf x -C dir .` writes)."""
    while name.startswith("./"):
        name = name[2:]
    return name


# --- what would be packed ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedFile:
    """One file `register` would pack: its path in the archive, size in bytes and sha256."""

    path: str
    size: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `register --dry-run --json` prints per file."""
        return {"path": self.path, "size": self.size, "digest": self.digest}


def _sha256_of(read: Callable[[int], bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := read(1 << 20):
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def directory_files(root: Path) -> list[PackedFile]:
    """The files `register` packs from a model directory, in archive order, with size and sha256 (read once each)."""
    from mlinfra.models.packaging import collect_files

    files = []
    for relative, path in collect_files(root, skipper(root)):
        with path.open("rb") as stream:
            digest = _sha256_of(stream.read)
        files.append(PackedFile(relative, path.stat().st_size, digest))
    return files


def archive_files(path: Path) -> list[PackedFile]:
    """The files a model.tar.gz holds, in archive order, with size and sha256 (one streaming read)."""
    files = []
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for info in tar:
                if info.isreg():
                    extracted = tar.extractfile(info)
                    digest = _sha256_of(extracted.read) if extracted is not None else _sha256_of(lambda n: b"")
                    files.append(PackedFile(_normal(info.name), info.size, digest))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BadInputError(f"{path}: not a readable gzip-compressed tar ({exc})") from None
    return files
