"""Entry point the Pulumi engine runs for `pulumi up` (Pulumi.yaml: `main: infra/`)."""

from mlinfra_infra.program import main

main()
