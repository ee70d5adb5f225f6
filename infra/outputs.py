"""Names of the stack outputs, shared by the program, the CLI and the tests."""

REGISTRY_BUCKET = "registryBucket"
REGISTRY_KEY_ARN = "registryKeyArn"
PACKAGE_GROUPS = "modelPackageGroups"
ENDPOINT_NAMES = "endpointNames"
ENDPOINT_RESOURCES = "endpointResources"  # model -> {"model": SageMaker model name, "config": endpoint config name}
ALERT_TOPIC_ARN = "alertTopicArn"
DASHBOARD_NAME = "dashboardName"
SANDBOX_INSTANCE_ID = "sandboxInstanceId"
SANDBOX_ANALYST_POLICY_ARN = "sandboxAnalystPolicyArn"
SANDBOX_SESSION_DOCUMENT = "sandboxSessionDocument"

ALL = (
    REGISTRY_BUCKET,
    REGISTRY_KEY_ARN,
    PACKAGE_GROUPS,
    ENDPOINT_NAMES,
    ENDPOINT_RESOURCES,
    ALERT_TOPIC_ARN,
    DASHBOARD_NAME,
    SANDBOX_INSTANCE_ID,
    SANDBOX_ANALYST_POLICY_ARN,
    SANDBOX_SESSION_DOCUMENT,
)
