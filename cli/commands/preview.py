"""`mlinfra preview`: render stacks offline under Pulumi's mock runtime and show what they declare."""

from __future__ import annotations

from typing import Any

import click

from mlinfra.options import all_option, chosen_stages, console, emit_json, json_option, stack_option
from mlinfra.stacks.project import Project

# The inputs worth a glance per resource type, as dotted paths into the provider inputs.
KEY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "aws:s3/bucket:Bucket": ("bucket", "objectLockEnabled"),
    "aws:kms/key:Key": ("enableKeyRotation", "deletionWindowInDays"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm",
        "rules.0.bucketKeyEnabled",
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("blockPublicAcls", "restrictPublicBuckets"),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ("rule.objectOwnership",),
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration": ("objectLockEnabled",),
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": ("modelPackageGroupName",),
    "aws:sagemaker/model:Model": ("primaryContainer.image", "enableNetworkIsolation"),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (
        "productionVariants.0.instanceType",
        "productionVariants.0.initialInstanceCount",
        "productionVariants.0.serverlessConfig.memorySizeInMb",
        "dataCaptureConfig.initialSamplingPercentage",
    ),
    "aws:sagemaker/endpoint:Endpoint": (
        "name",
        "deploymentConfig.blueGreenUpdatePolicy.trafficRoutingConfiguration.type",
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name", "metricName", "threshold"),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": ("alarmName",),
    "aws:ec2/instance:Instance": ("instanceType", "metadataOptions.httpTokens", "associatePublicIpAddress"),
    "aws:scheduler/schedule:Schedule": ("scheduleExpression", "scheduleExpressionTimezone"),
    "aws:lambda/function:Function": ("name", "runtime", "memorySize", "s3Key"),
    "aws:sns/topic:Topic": ("name",),
    "aws:appautoscaling/target:Target": ("minCapacity", "maxCapacity"),
}
SKIP_FALLBACK = {"tags", "policy", "assumeRolePolicy", "userData", "dashboardBody"}


def _lookup(inputs: Any, path: str) -> Any:
    value = inputs
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def key_properties(type_token: str, inputs: dict[str, Any]) -> list[tuple[str, Any]]:
    """The (name, value) pairs shown beside a resource in the tree."""
    paths = KEY_PROPERTIES.get(type_token)
    if paths is None:
        scalars = [k for k, v in inputs.items() if k not in SKIP_FALLBACK and isinstance(v, str | int | float | bool)]
        paths = tuple(sorted(scalars)[:3])
    found = [(path.split(".")[-1], _lookup(inputs, path)) for path in paths]
    return [(name, value) for name, value in found if value is not None]


def _print_tree(rendered: Any) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    from mlinfra.stacks.render import short_type

    root = Tree(f"[bold]stack {rendered.stack}[/bold]  ({len(rendered.resources)} resources)")
    nodes: dict[str | None, Tree] = {None: root}
    for resource in rendered.resources:
        props = "  ".join(f"{k}={escape(str(v))}" for k, v in key_properties(resource.type, resource.inputs))
        label = f"{resource.name} [dim]{short_type(resource.type)}[/dim]" + (f"  {props}" if props else "")
        nodes[resource.name] = nodes.get(resource.parent, root).add(label)
    console().print(root)


@click.command()
@stack_option
@all_option
@click.option(
    "--diff",
    "show_diff",
    is_flag=True,
    help="Compare with the stack as of --base and print what would be added, removed, replaced or changed.",
)
@click.option(
    "--base",
    metavar="REF",
    help="Git ref to compare with (with --diff); default: the merge base of HEAD with main (or origin/main).",
)
@click.option(
    "--markdown", is_flag=True, help="With --diff: print Markdown (for a pull request comment); values never cut."
)
@click.option("--details", is_flag=True, help="With --diff: list every changed property, before -> after.")
@json_option
def preview(
    stack: str | None,
    all_stacks: bool,
    show_diff: bool,
    base: str | None,
    markdown: bool,
    details: bool,
    as_json: bool,
) -> None:
    """Render a stack offline and print its resource tree with key properties, or (--diff) what would change.

    Runs the real Pulumi program under Pulumi's mock runtime: no engine, no credentials, no network. Provider-computed
    values (ARNs, ids) are placeholders; secret config values are masked. --json prints
    {"stack", "resources": [{"type", "name", "parent", "inputs"}]} per stack, inputs under Pulumi's wire names;
    with --all, a list of those. Refuses (exit 2) a stage whose registry.readerRoleArns does not name the next
    stage's access.roleArn (cross-account promotion could not read its artifacts). Under each tree, one line gives
    the policy pack's verdict and the monthly estimate (the same as `mlinfra check`, which lists the details).

    With --diff, each stack as of --base (default: the merge base with main) is compared with the working tree: when
    only stack files changed, the base's stack file is rendered with this program; when the program changed, the
    base's whole tree is rendered in a separate process. It prints the resources to add, remove, replace or update
    in place: first Pulumi's summary (`+0 ~1 -0 +-2`, the resources to replace named), then one line per resource
    with what forces each replacement; --details adds every changed property, before -> after (a new pin replaces
    the SageMaker model and endpoint configuration and updates the endpoint in place). --json prints {"stack",
    "base", "summary", "resources":
    [{"action", "type", "name", "parent", "changes": [{"path", "before", "after", "replaces", "computed"}]}],
    "monthlyUsd": {"before", "after", "delta", "resources"}}; --markdown prints a table for a pull request. Each
    stack's monthly estimate before and after the change (the policy pack's price table) is shown with its delta.

    \b
    Examples:
      mlinfra preview --stack prod
      mlinfra preview --all
      mlinfra preview --stack dev --json | jq '.resources[] | select(.type == "aws:ec2/instance:Instance")'
      mlinfra preview --diff --stack staging
      mlinfra preview --diff --stack staging --details
      mlinfra preview --diff --all --base origin/main --markdown >> "$GITHUB_STEP_SUMMARY"
    """
    project = Project.find()
    if (base or markdown or details) and not show_diff:
        raise click.UsageError("--base, --markdown and --details go with --diff")
    if markdown and as_json:
        raise click.UsageError("give --json or --markdown, not both")
    stages = chosen_stages(project, stack, all_stacks)
    from mlinfra.stacks.files import check_chain, load_stage
    from mlinfra.stacks.render import render_stage

    # Cross-account promotion: each stage's readerRoleArns must name the next stage's access.roleArn.
    if show_diff:
        check_chain(project, stages)
        from mlinfra.stacks.diff import preview_diffs

        diffs = preview_diffs(project, stages, base)
        if as_json:
            documents = [d.to_json() for d in diffs]
            emit_json(documents if all_stacks else documents[0])
        else:
            click.echo("\n".join(d.markdown() if markdown else d.text(details=details) for d in diffs))
        return
    loaded = [load_stage(project, stage) for stage in stages]
    check_chain(project, stages)
    rendered = [render_stage(stage) for stage in loaded]
    if as_json:
        documents = [r.to_json() for r in rendered]
        emit_json(documents if all_stacks else documents[0])
        return
    from mlinfra.stacks.check import check_rendered

    for stage, r in zip(loaded, rendered, strict=True):
        _print_tree(r)
        _print_policy_summary(check_rendered(stage, r))


def _print_policy_summary(report: Any) -> None:
    """One line under the tree: the policy pack's verdict and the estimate (details: `mlinfra check`)."""
    levels = [v.level for v in report.violations]
    verdict = f"{len(levels)} violation(s) ({levels.count('mandatory')} mandatory)" if levels else "no violations"
    budget = "" if report.budget is None else f" of {report.budget:,.2f} budget"
    style = "red" if report.refused else "green"
    console().print(
        f"[{style}]policy: {report.rules} rules, {verdict}; ~${report.estimate.total:,.2f}/month{budget}[/{style}]"
        f"  (details: mlinfra check --stack {report.stack})"
    )
