"""The mlinfra operator toolkit (import name `mlinfra`): CLI commands over the registry and the stacks."""
