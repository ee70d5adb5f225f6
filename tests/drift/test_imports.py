"""The drift engine is packaged into the drift job's Lambda: it must not import the CLI or the Pulumi program, and
loads scipy, jinja2 and boto3 only in the calls that need them."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_only_its_numeric_dependencies() -> None:
    code = (
        "import sys\n"
        "import mlinfra_drift.baseline, mlinfra_drift.capture, mlinfra_drift.records, mlinfra_drift.score\n"
        "import mlinfra_drift.report, mlinfra_drift.publish, mlinfra_drift.metrics, mlinfra_drift.parallel\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(roots & {'mlinfra', 'mlinfra_infra', 'mlinfra_templates', 'scipy', 'jinja2', 'boto3',"
        " 'botocore', 'pulumi', 'click', 'rich'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
