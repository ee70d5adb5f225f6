"""What the fork server of `mlinfra drift`'s worker processes loads once, so that every worker it forks starts warm.

Importing this module imports the scoring code and boto3 and makes one S3 client, which parses and caches S3's
service model in boto3's default session: a worker's own client (mlinfra_drift.capture.S3Access.client) then takes
milliseconds instead of about 80. The client is given placeholder keys, so no credential provider runs (no
credential_process, no instance-metadata lookup), and making it sends no request.
"""

from __future__ import annotations

import boto3

import mlinfra_drift.parallel  # noqa: F401 - loaded for the workers

boto3.client("s3", region_name="us-east-1", aws_access_key_id="preload", aws_secret_access_key="preload")  # noqa: S106
