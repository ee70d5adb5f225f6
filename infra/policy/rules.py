"""Every rule of the policy pack, registered in `engine.RULES` on import.

Grouped by service in storage (S3, KMS), compute (SageMaker, EC2) and access (IAM, CloudWatch, SNS, logs, tags).
Each rule is a plain function over a resource's inputs (or the stack's resources) and names the equivalent Checkov
check where one exists (ids from Checkov's AWS check list).
"""

from __future__ import annotations

from . import access, accesscheck, compute, storage
from .engine import RULES

__all__ = ["RULES", "access", "accesscheck", "compute", "storage"]
