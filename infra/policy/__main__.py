"""Entry point the Pulumi engine runs for `pulumi up --policy-pack infra/policy`: serves the mlinfra policy pack.

Constructing `PolicyPack` starts the analyzer's gRPC server on loopback, prints its port and blocks (pulumi_policy's
protocol); run it only from the engine (or a test that talks to it over gRPC).
"""

from pulumi_policy import PolicyPack

from mlinfra_infra.policy.pack import DEFAULT_LEVEL, PACK_NAME, policies

PolicyPack(name=PACK_NAME, policies=policies(), enforcement_level=DEFAULT_LEVEL)
