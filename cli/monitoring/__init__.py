"""Monitoring from the CLI: `mlinfra drift` over the drift engine (mlinfra_drift)."""
