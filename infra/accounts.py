"""Stages in separate accounts: checks across stack files that no single stack's validation can make."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from .config import CONFIG_NAMESPACE, StackConfig


def check_promotion_chain(configs: Mapping[str, StackConfig]) -> list[str]:
    """Cross-stack problems of promotion across accounts, one line each (empty when the chain is consistent).

    A stage's `registry.readerRoleArns` must name the next stage's promotion role (its `access.roleArn`): the bucket
    and key policies grant that role read on `models/`, and without it promotion cannot copy server-side. A reader
    role must also live in the next stage's account when that account is known. `configs` maps stage names to their
    loaded configs (the CLI loads every stage's file).
    """
    problems: list[str] = []
    present = [stage for stage in next(iter(configs.values())).stages if stage in configs] if configs else []
    for source, target in itertools.pairwise(present):
        src, dst = configs[source], configs[target]
        key = f"stacks/Pulumi.{source}.yaml: {CONFIG_NAMESPACE}:registry.readerRoleArns"
        readers = src.registry.reader_role_arns
        role = dst.access.role_arn
        if role is not None and role not in readers:
            problems.append(
                f"{key}: does not list {target}'s promotion role {role} (access.roleArn of {target}); "
                f"add it, or `mlinfra promote --to {target}` cannot read {source}'s artifacts"
            )
        for reader in readers:
            account = reader.split(":")[4]
            expected = dst.account_id or (role.split(":")[4] if role else None)
            if expected is not None and account != expected:
                problems.append(
                    f"{key}: {reader} is not in {target}'s account {expected}; list {target}'s promotion role"
                )
            if role is None and dst.account_id is None:
                problems.append(
                    f"{key}: names {reader} but {target} sets no access.roleArn; set {target}'s "
                    f"{CONFIG_NAMESPACE}:access.roleArn to the role mlinfra assumes there"
                )
    return problems
