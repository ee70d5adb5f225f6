"""Entry point the Pulumi engine runs for the bootstrap stack (infra/bootstrap/Pulumi.yaml)."""

from mlinfra_infra.bootstrap.program import main

main()
