"""mlinfra's drift engine (import name `mlinfra_drift`): baselines, capture reading, scores, metrics, reports.

One package, used by `mlinfra drift` on an analyst's machine and in CI, and packaged as the scheduled drift job
that each monitored stage runs in its own AWS account. It imports neither the CLI (`mlinfra`) nor the Pulumi program
(`mlinfra_infra`), so the Lambda package holds only this package and its numeric dependencies.
"""
