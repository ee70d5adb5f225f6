"""SandboxVM: the analyst's private, SSM-only VM, stopped every evening."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

import mlinfra_templates
from mlinfra_infra import naming
from mlinfra_infra.config import SandboxSettings
from mlinfra_infra.layout import AUDIT_PREFIX, CODE_PREFIX, MODELS_PREFIX, STAGES_PREFIX, UPLOADS_PREFIX

from . import sandbox_support
from .common import TYPE_PREFIX, assume_role_policy, policy_document, statement, tags

CLOUD_INIT_TEMPLATE = "sandbox/cloud-init.yaml.j2"
# What the SSM agent needs to register and carry Session Manager sessions
# (https://docs.aws.amazon.com/systems-manager/latest/userguide/setup-create-vpc.html) and stream them to
# CloudWatch Logs, what the mlinfra CLI calls from the VM (SageMaker to register model packages, STS to learn its
# identity), and CodeArtifact, where pip finds Python, Jupyter and mlinfra packages.
INTERFACE_ENDPOINT_SERVICES = (
    "ssm",
    "ssmmessages",
    "ec2messages",
    "logs",
    "sagemaker.api",
    "sts",
    "codeartifact.api",
    "codeartifact.repositories",
)
SSM_MANAGED_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
# EventBridge Scheduler's universal targets for the EC2 StopInstances and StartInstances APIs.
STOP_INSTANCES_TARGET = "arn:aws:scheduler:::aws-sdk:ec2:stopInstances"
START_INSTANCES_TARGET = "arn:aws:scheduler:::aws-sdk:ec2:startInstances"
# Registry prefixes the analyst reads (see ARCHITECTURE.md, "Registry and promotion"); what `mlinfra register`
# writes is granted prefix by prefix in `_instance_role`.
REGISTRY_PREFIXES = (MODELS_PREFIX, STAGES_PREFIX, AUDIT_PREFIX, UPLOADS_PREFIX)
JUPYTER_PORT = 8888
HTTPS = 443


@dataclass
class SandboxVMArgs:
    """The sandbox settings and the registry the analyst works against."""

    project: str
    stage: str
    owner: str
    region: str
    account_id: pulumi.Input[str]
    settings: SandboxSettings
    registry_bucket: pulumi.Input[str]
    registry_bucket_arn: pulumi.Input[str]
    registry_key_arn: pulumi.Input[str]
    # The registry locks artifacts and audit records as they are written (registry.objectLock).
    object_lock: bool = False


@dataclass
class _Network:
    """Where the instance goes and what must exist before it first boots."""

    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    ready: list[pulumi.Resource] = field(default_factory=list)


class SandboxVM(pulumi.ComponentResource):
    """An EC2 instance for analysts: private subnet, no inbound rules, SSM Session Manager only, stopped nightly.

    Security: no public IP and no key pair; a security group with no ingress and HTTPS-only egress; IMDSv2 with a
    hop limit of 1 (containers on the VM cannot reach the instance's credentials); a root volume encrypted with the
    registry key; an instance profile that reaches only the stage's registry prefixes, its key and its own model
    package groups. Without an existing network in config it creates a VPC with no internet route at all, reaching
    AWS through VPC endpoints.
    """

    instance_id: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    analyst_policy_arn: pulumi.Output[str]
    session_document_name: pulumi.Output[str]

    def __init__(self, name: str, args: SandboxVMArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:SandboxVM", name, None, opts)
        # Kept for the helpers below; prefixed because pulumi.Resource already uses `_name`.
        self._vm_name = name
        self._vm_args = args
        self._vm_tags = tags(args.stage, args.owner)
        settings = args.settings
        account = pulumi.Output.from_input(args.account_id)

        net = settings.network
        # An existing subnet from config is used as given: its routes and endpoints are its owner's business.
        network = (
            _Network(vpc_id=net.vpc_id, subnet_id=net.subnet_id)
            if net.vpc_id is not None and net.subnet_id is not None
            else self._private_network(net.cidr)
        )

        security_group = aws.ec2.SecurityGroup(
            f"{name}-instance-sg",
            vpc_id=network.vpc_id,
            description=f"mlinfra {args.stage} analyst VM: no inbound, HTTPS out only",
            # No inbound rule of any kind: Session Manager sessions ride on the SSM agent's outbound connection, so
            # nothing ever needs to connect in.
            ingress=[],
            # HTTPS out is all the SSM agent, S3, SageMaker, STS and dnf use. The destination stays open because
            # S3 has no fixed range: in the network created here its addresses are the gateway endpoint's prefix
            # list, whose id AWS assigns at creation (and the offline render cannot know), and with no internet
            # route 443 anywhere reaches only the endpoints and S3. In an existing network, what the VM reaches is
            # that network's routing (NAT, endpoints, proxy) to decide.
            egress=[
                {
                    "description": "HTTPS to AWS APIs",
                    "protocol": "tcp",
                    "from_port": HTTPS,
                    "to_port": HTTPS,
                    "cidr_blocks": ["0.0.0.0/0"],
                }
            ],
            tags=self._tags("instance"),
            opts=pulumi.ResourceOptions(parent=self),
        )

        source = sandbox_support.package_source(
            self,
            name,
            project=args.project,
            stage=args.stage,
            region=args.region,
            account_id=account,
            key_arn=args.registry_key_arn,
            tags=self._tags("packages"),
        )
        _, session_document = sandbox_support.session_logging(
            self,
            name,
            project=args.project,
            stage=args.stage,
            key_arn=args.registry_key_arn,
            retention_days=settings.session_log_days,
            tags=self._tags(),
        )
        role, profile, permissions = self._instance_role(account, source)

        user_data = pulumi.Output.all(args.registry_bucket, account).apply(
            lambda values: mlinfra_templates.render(
                CLOUD_INIT_TEMPLATE,
                project=args.project,
                stage=args.stage,
                region=args.region,
                registry_bucket=values[0],
                account_id=values[1],
                codeartifact_domain=source.domain,
                codeartifact_repository=source.repository,
                mlinfra_wheel=settings.mlinfra_wheel,
                jupyter_port=JUPYTER_PORT,
                session_document=naming.session_document(args.project, args.stage),
            )
        )
        ami = aws.ssm.get_parameter_output(name=settings.ami_parameter, opts=pulumi.InvokeOutputOptions(parent=self))
        instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami.value,
            instance_type=settings.instance_type,
            subnet_id=network.subnet_id,
            vpc_security_group_ids=[security_group.id],
            iam_instance_profile=profile.name,
            associate_public_ip_address=False,
            # No key_name: access is by Session Manager, authorised by IAM and logged by CloudTrail.
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                # One hop: a container on the VM cannot fetch the instance role's credentials.
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            root_block_device={
                "encrypted": True,
                "kms_key_id": args.registry_key_arn,
                "volume_type": "gp3",
                "volume_size": settings.root_volume_gb,
                "delete_on_termination": True,
                # Tagged here rather than with volume_tags, which fights any volume attached later.
                "tags": self._tags("root"),
            },
            monitoring=True,
            ebs_optimized=True,
            user_data=user_data,
            # A template change updates the VM in place (stop, start) instead of destroying the analyst's disk.
            user_data_replace_on_change=False,
            tags=self._tags(),
            opts=pulumi.ResourceOptions(
                parent=self,
                # The endpoints and routes must exist before first boot: cloud-init's dnf needs the S3 gateway
                # endpoint, its pip the CodeArtifact repositories and the role's permissions, and the SSM agent
                # registers once at start-up. Policies are separate resources the instance profile does not wait for.
                depends_on=[*network.ready, *permissions, *source.ready],
                # The AMI parameter moves whenever Amazon publishes an image; following it would replace the VM,
                # and the analyst's work with it, on an unrelated `pulumi up`. Replace it deliberately instead.
                ignore_changes=["ami"],
            ),
        )

        self._schedules(instance, account)

        instance_arn = pulumi.Output.concat("arn:aws:ec2:", args.region, ":", account, ":instance/", instance.id)
        # Not attached to anyone: the platform team attaches it to the analysts' group or permission set.
        analyst_policy = aws.iam.Policy(
            f"{name}-analyst-access",
            description=f"Analysts: start the mlinfra {args.stage} VM, open logged shells and forward Jupyter's port",
            policy=sandbox_support.analyst_policy_document(
                args.region, account, instance_arn, session_document.name, args.registry_key_arn
            ),
            tags=self._tags(),
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.instance_id = instance.id
        self.security_group_id = security_group.id
        self.subnet_id = pulumi.Output.from_input(network.subnet_id)
        self.role_arn = role.arn
        self.analyst_policy_arn = analyst_policy.arn
        self.session_document_name = session_document.name
        self.register_outputs(
            {
                "instanceId": self.instance_id,
                "securityGroupId": self.security_group_id,
                "subnetId": self.subnet_id,
                "roleArn": self.role_arn,
                "analystPolicyArn": self.analyst_policy_arn,
                "sessionDocumentName": self.session_document_name,
            }
        )

    def _tags(self, suffix: str | None = None) -> dict[str, str]:
        """The shared tags plus a Name for the EC2 console."""
        label = f"{self._vm_args.project}-{self._vm_args.stage}-vm" + (f"-{suffix}" if suffix else "")
        return {**self._vm_tags, "Name": label}

    def _private_network(self, cidr: str) -> _Network:
        """A VPC with one private subnet and no route out: AWS is reached through VPC endpoints only."""
        name, region = self._vm_name, self._vm_args.region
        child = pulumi.ResourceOptions(parent=self)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cidr,
            # Private DNS of interface endpoints needs both, or ssm.<region>.amazonaws.com resolves to public IPs.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=self._tags(),
            opts=child,
        )
        # AWS gives every VPC a default security group that allows all traffic between its members. Adopting it
        # without rules empties it, so nothing placed in it by mistake is reachable (Security Hub EC2.2).
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, tags=self._tags("default"), opts=child)
        zone = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self))
        subnet = aws.ec2.Subnet(
            f"{name}-subnet",
            vpc_id=vpc.id,
            cidr_block=_first_subnet(cidr),
            availability_zone=zone.names.apply(lambda names: names[0]),
            map_public_ip_on_launch=False,
            tags=self._tags("private"),
            opts=child,
        )
        # Only the implicit local route: there is no internet gateway and no NAT to route to.
        route_table = aws.ec2.RouteTable(f"{name}-routes", vpc_id=vpc.id, tags=self._tags("private"), opts=child)
        association = aws.ec2.RouteTableAssociation(
            f"{name}-routes-subnet", subnet_id=subnet.id, route_table_id=route_table.id, opts=child
        )
        # The registry, and Amazon Linux's package repositories, are S3 buckets: a gateway endpoint reaches them
        # at no charge and adds S3's prefix list to the route table.
        s3 = aws.ec2.VpcEndpoint(
            f"{name}-endpoint-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[route_table.id],
            # Only the stage's registry and the buckets the OS and the SSM agent need: the VM cannot copy data to
            # any other bucket, its own account's or anyone else's.
            policy=sandbox_support.s3_endpoint_policy(region, self._vm_args.registry_bucket_arn),
            tags=self._tags("s3"),
            opts=child,
        )
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoint-sg",
            vpc_id=vpc.id,
            description=f"mlinfra {self._vm_args.stage} analyst VM endpoints: HTTPS from the VPC",
            ingress=[
                {
                    "description": "HTTPS from the VPC",
                    "protocol": "tcp",
                    "from_port": HTTPS,
                    "to_port": HTTPS,
                    "cidr_blocks": [cidr],
                }
            ],
            # Endpoint interfaces only answer; the provider removes AWS's default allow-all egress rule when none
            # is declared.
            tags=self._tags("endpoints"),
            opts=child,
        )
        interfaces: list[pulumi.Resource] = [
            aws.ec2.VpcEndpoint(
                f"{name}-endpoint-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[subnet.id],
                security_group_ids=[endpoint_sg.id],
                tags=self._tags(service.replace(".", "-")),
                opts=child,
            )
            for service in INTERFACE_ENDPOINT_SERVICES
        ]
        return _Network(vpc_id=vpc.id, subnet_id=subnet.id, ready=[association, s3, *interfaces])

    def _instance_role(
        self, account: pulumi.Output[str], source: sandbox_support.PackageSource
    ) -> tuple[aws.iam.Role, aws.iam.InstanceProfile, list[pulumi.Resource]]:
        """The instance's role: the SSM agent, what `mlinfra register` writes, the package source, nothing else.

        `register` (cli/registration.py, cli/registry.py) streams the artifact to `uploads/`, copies it to its content
        address under `models/` and deletes the upload (its version, for good), writes the version record and
        baseline (create-only), moves the sandbox's stage pointer (If-Match) and writes an audit record
        (create-only); `attach` (cli/attach.py) replaces a version's record or baseline by compare-and-swap. The role
        grants exactly that: writes to `stages/` and version records only as a create or a compare-and-swap, to
        `audit/` only as a create, deletes only under `uploads/`, and nothing that bypasses retention.
        """
        name, args = self._vm_name, self._vm_args
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            description=f"mlinfra {args.stage} analyst VM: SSM agent and the {args.stage} registry",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
            tags=self._tags(),
            opts=child,
        )
        ssm_core = aws.iam.RolePolicyAttachment(
            f"{name}-ssm-core", role=role.name, policy_arn=SSM_MANAGED_POLICY_ARN, opts=child
        )
        bucket_arn = pulumi.Output.from_input(args.registry_bucket_arn)

        def under(pattern: str) -> pulumi.Output[str]:
            return pulumi.Output.concat(bucket_arn, f"/{pattern}")

        sagemaker = pulumi.Output.concat("arn:aws:sagemaker:", args.region, ":", account)
        packages = f"{args.project}-{args.stage}-*"
        session_logs = pulumi.Output.concat(
            f"arn:aws:logs:{args.region}:", account, f":log-group:{naming.session_log_group(args.project, args.stage)}"
        )
        access = aws.iam.RolePolicy(
            f"{name}-registry-access",
            role=role.id,
            policy=policy_document(
                # Versions too: `history` reads audit records hidden behind a delete marker.
                statement("ListRegistry", ["s3:ListBucket", "s3:ListBucketVersions"], [bucket_arn]),
                # cloud-init downloads the mlinfra wheel the team published here (hash-checked, installed offline).
                statement("ReadPublishedWheels", ["s3:GetObject"], [under(f"{CODE_PREFIX}wheels/*")]),
                statement(
                    "ReadRegistry",
                    ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes"],
                    [under(f"{prefix}*") for prefix in REGISTRY_PREFIXES],
                ),
                # The artifact streams here before its digest is known; register removes it (by version) once moved.
                statement(
                    "StageUploads",
                    ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:DeleteObjectVersion"],
                    [under(f"{UPLOADS_PREFIX}*")],
                ),
                # The server-side copy to the content address (CopyObject takes no conditional headers); the key is
                # the SHA-256 of the bytes, which `promote` verifies against S3's stored checksum.
                statement("StoreContentAddressedArtifacts", ["s3:PutObject"], [under(f"{MODELS_PREFIX}*/sha256/*")]),
                # Version records and the files stored with them: created, or replaced by compare-and-swap (attach).
                statement(
                    "CreateVersionRecords",
                    ["s3:PutObject"],
                    [under(f"{MODELS_PREFIX}*/versions/*")],
                    condition={"Null": {"s3:if-none-match": "false"}},
                ),
                statement(
                    "SwapVersionRecords",
                    ["s3:PutObject"],
                    [under(f"{MODELS_PREFIX}*/versions/*")],
                    condition={"Null": {"s3:if-match": "false"}},
                ),
                statement(
                    "CreateAuditRecords",
                    ["s3:PutObject"],
                    [under(f"{AUDIT_PREFIX}*")],
                    condition={"Null": {"s3:if-none-match": "false"}},
                ),
                # The sandbox's stage pointer: created (If-None-Match) or swapped (If-Match), never overwritten.
                statement(
                    "CreateStagePointers",
                    ["s3:PutObject"],
                    [under(f"{STAGES_PREFIX}*")],
                    condition={"Null": {"s3:if-none-match": "false"}},
                ),
                statement(
                    "SwapStagePointers",
                    ["s3:PutObject"],
                    [under(f"{STAGES_PREFIX}*")],
                    condition={"Null": {"s3:if-match": "false"}},
                ),
                *(
                    # Writing with a retention date (ObjectLockMode, RetainUntilDate) is authorised as this action.
                    [
                        statement(
                            "LockArtifactsAndAuditRecords",
                            ["s3:PutObjectRetention"],
                            [under(f"{MODELS_PREFIX}*/sha256/*"), under(f"{AUDIT_PREFIX}*")],
                        )
                    ]
                    if args.object_lock
                    else []
                ),
                statement("UseRegistryKey", ["kms:Decrypt", "kms:GenerateDataKey"], [args.registry_key_arn]),
                # Tags given to CreateModelPackage are authorised as sagemaker:AddTags on the new package.
                statement(
                    "RegisterModelPackages",
                    [
                        "sagemaker:CreateModelPackage",
                        "sagemaker:DescribeModelPackage",
                        "sagemaker:UpdateModelPackage",
                        "sagemaker:DescribeModelPackageGroup",
                        "sagemaker:AddTags",
                    ],
                    [
                        pulumi.Output.concat(sagemaker, f":model-package-group/{packages}"),
                        pulumi.Output.concat(sagemaker, f":model-package/{packages}/*"),
                    ],
                ),
                # `mlinfra status` on the VM: the stage's alarm states, drift metrics and endpoints (read-only; found
                # by the access contract). GetMetricStatistics takes no resource-level permission.
                statement(
                    "ReadStageStatus",
                    ["cloudwatch:DescribeAlarms"],
                    [pulumi.Output.concat("arn:aws:cloudwatch:", args.region, ":", account, f":alarm:{packages}")],
                ),
                # No condition: cloudwatch:namespace is a key of PutMetricData only, it would never match here.
                statement("ReadDriftMetrics", ["cloudwatch:GetMetricStatistics"], ["*"]),
                statement(
                    "DescribeStageEndpoints",
                    ["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
                    [
                        pulumi.Output.concat(sagemaker, f":endpoint/{packages}"),
                        pulumi.Output.concat(sagemaker, f":endpoint-config/{packages}"),
                        pulumi.Output.concat(sagemaker, f":model/{packages}"),
                    ],
                ),
                # ListModelPackages supports no resource-level permission: IAM only honours it on "*". It returns
                # summaries (names, versions, status) and nothing from the registry's bucket.
                statement("ListModelPackages", ["sagemaker:ListModelPackages"], ["*"]),
                # pip's index: a CodeArtifact token (which needs a bearer token from STS) and read on the repository.
                statement("CodeArtifactToken", ["codeartifact:GetAuthorizationToken"], [source.domain_arn]),
                statement(
                    "CodeArtifactRead",
                    ["codeartifact:GetRepositoryEndpoint", "codeartifact:ReadFromRepository"],
                    [source.repository_arn],
                ),
                statement(
                    "CodeArtifactBearerToken",
                    ["sts:GetServiceBearerToken"],
                    ["*"],
                    condition={"StringEquals": {"sts:AWSServiceName": "codeartifact.amazonaws.com"}},
                ),
                # The SSM agent streams shell sessions to the stage's session log group.
                statement(
                    "StreamSessionLogs",
                    ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    [session_logs, pulumi.Output.concat(session_logs, ":log-stream:*")],
                ),
                # The agent checks the group exists and is encrypted before streaming; Describe* takes only "*".
                statement("FindSessionLogGroup", ["logs:DescribeLogGroups"], ["*"]),
                # sts:GetCallerIdentity needs no permission, so the CLI's identity check is not listed.
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, tags=self._tags(), opts=child)
        return role, profile, [ssm_core, access]

    def _schedules(self, instance: aws.ec2.Instance, account: pulumi.Output[str]) -> None:
        """EventBridge Scheduler schedules that stop the VM every evening and, if configured, start it each morning."""
        name, args, settings = self._vm_name, self._vm_args, self._vm_args.settings
        child = pulumi.ResourceOptions(parent=self)
        # Trust policies take no Resource element, so this one is written out rather than built by `statement`.
        # aws:SourceAccount stops another account's schedule from borrowing the role (confused deputy).
        trust = pulumi.Output.json_dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "scheduler.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                    }
                ],
            }
        )
        role = aws.iam.Role(
            f"{name}-stop-role",
            description=f"EventBridge Scheduler stops (and starts) the mlinfra {args.stage} analyst VM",
            assume_role_policy=trust,
            tags=self._tags("stop"),
            opts=child,
        )
        instance_arn = pulumi.Output.concat("arn:aws:ec2:", args.region, ":", account, ":instance/", instance.id)
        statements = [statement("StopTheSandboxVM", ["ec2:StopInstances"], [instance_arn])]
        if settings.start_schedule is not None:
            statements += sandbox_support.start_statements(instance_arn, args.registry_key_arn)
        policy = aws.iam.RolePolicy(
            f"{name}-stop-policy",
            role=role.id,
            policy=policy_document(*statements),
            opts=child,
        )
        # Schedules take no tags (only schedule groups do). Scheduler does not check the role when the schedule is
        # created, so the dependency makes sure the permission exists before the first evening comes.
        aws.scheduler.Schedule(
            f"{name}-nightly-stop",
            name=naming.vm_schedule(args.project, args.stage, "stop"),
            description=f"Stop the mlinfra {args.stage} analyst VM every evening",
            schedule_expression=settings.stop_schedule,
            schedule_expression_timezone=settings.timezone,
            flexible_time_window={"mode": "OFF"},
            target={
                "arn": STOP_INSTANCES_TARGET,
                "role_arn": role.arn,
                "input": pulumi.Output.json_dumps({"InstanceIds": [instance.id]}),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        if settings.start_schedule is not None:
            aws.scheduler.Schedule(
                f"{name}-morning-start",
                name=naming.vm_schedule(args.project, args.stage, "start"),
                description=f"Start the mlinfra {args.stage} analyst VM every working morning",
                schedule_expression=settings.start_schedule,
                schedule_expression_timezone=settings.timezone,
                flexible_time_window={"mode": "OFF"},
                target={
                    "arn": START_INSTANCES_TARGET,
                    "role_arn": role.arn,
                    "input": pulumi.Output.json_dumps({"InstanceIds": [instance.id]}),
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
            )


def _first_subnet(cidr: str) -> str:
    """The first /24 of the VPC's range: room for the VM and the endpoints' interfaces."""
    return str(next(ipaddress.ip_network(cidr).subnets(new_prefix=24)))
