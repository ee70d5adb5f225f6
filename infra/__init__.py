"""The mlinfra Pulumi program (import name `mlinfra_infra`): typed stack config, naming, components, program."""
