"""Validating every shipped stack's config, AWS data included, against importing what validation needs (limit: 2x).

Instance types and regions are checked against botocore's service models and partition data (infra/awsdata.py);
this measures that the JSON read lazily for it keeps loading a project's stacks close to the cost of its imports.
"""

from __future__ import annotations

import sys

from bench.common import median_seconds, report, run_quiet

REPEAT = 7
IMPORTS = "import mlinfra.stacks.files, mlinfra_infra.config, ruamel.yaml"
LOAD_ALL = (
    f"{IMPORTS}\n"
    "from mlinfra.stacks.project import Project\n"
    "from mlinfra.stacks.files import load_stage\n"
    "project = Project.find()\n"
    "for stage in project.stages():\n"
    "    load_stage(project, stage)\n"
)


def main() -> bool:
    baseline = median_seconds(lambda: run_quiet(sys.executable, "-c", IMPORTS), REPEAT)
    loading = median_seconds(lambda: run_quiet(sys.executable, "-c", LOAD_ALL), REPEAT)
    return report("validate the 4 shipped stacks (median)", loading, "importing the config modules", baseline, 2.0)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
