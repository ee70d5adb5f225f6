"""`mlinfra ui --static DIR`: the same pages as files, for a team to publish behind its own authentication.

Every page links to the others by relative paths ending in index.html, so the copy works opened from disk, from a
bucket behind a CDN, or from GitHub Pages under any path. No actions, no refresh button, no sort links (the
versions stay newest first); each version links to its diff with the version before it. The site is written to a
temporary directory beside DIR and moved into place at the end: a failure leaves DIR as it was. DIR must be new,
empty, or a site written here before (it holds the marker file), so nothing else is ever overwritten.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlinfra.errors import BadInputError
from mlinfra.ui import views
from mlinfra.ui.data import RegistryView

MARKER = ".mlinfra-ui-static"


def _check_target(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise BadInputError(f"--static {directory}: is a file; give a directory")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / MARKER).is_file():
        raise BadInputError(
            f"--static {directory}: the directory is not empty and was not written by `mlinfra ui --static`; give a "
            "new or empty directory"
        )


def pages(view: RegistryView) -> dict[str, str]:
    """Every page of the site, by its path in the site."""
    import mlinfra_templates

    site = views.Site(static=True)
    out = {"index.html": views.board_page(view, site.at("")), "ui.css": mlinfra_templates.render("ui/ui.css.j2")}
    infos = view.stage_infos()
    models = sorted({row["model"] for row in view.board().value})
    for model in models:
        path = views.model_path(model)
        out[path + "index.html"] = views.model_page(view, model, site.at(path))
        numbers = sorted(int(row["version"]) for row in view.model(model).value["versions"])
        for index, number in enumerate(numbers):
            path = views.version_path(model, number)
            out[path + "index.html"] = views.version_page(view, model, number, site.at(path))
            out[path + "card.html"] = view.card_html(model, number).value
            if index:
                path = views.diff_path(model, numbers[index - 1], number)
                out[path + "index.html"] = views.diff_page(view, model, numbers[index - 1], number, site.at(path))
        for info in infos.values():
            if not info.drift or model not in info.models:
                continue
            path = views.drift_path(model, info.name)
            out[path + "index.html"] = views.drift_page(view, model, info.name, site.at(path))
            for run in view.drift(model, info.name).value:
                html = view.drift_report_html(model, info.name, run.stamp).value
                if html is not None:
                    out[views.report_path(model, info.name, run.stamp)] = html
    return out


def write_site(view: RegistryView, directory: Path) -> int:
    """Write the site into `directory` (replacing a site written there before); the number of files written."""
    _check_target(directory)
    files = pages(view)  # read everything first: a registry error writes nothing
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for path, text in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (staging / MARKER).write_text("written by mlinfra ui --static\n", encoding="utf-8")
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            directory.rename(old)
            staging.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(files)
