"""The least-privilege IAM policy and the role trust policy an admin pastes into their cloud."""

from __future__ import annotations

import re
from typing import Any

from .config import S3Config


def _partition_name(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def bucket_arn(config: S3Config) -> str:
    return f"arn:{_partition_name(config.region)}:s3:::{config.bucket}"


def _objects_arn(config: S3Config) -> str:
    return bucket_arn(config) + (f"/{config.prefix}/*" if config.prefix else "/*")


def least_privilege_policy(config: S3Config) -> dict[str, Any]:
    """The IAM policy (identity or role permissions) Astralog needs for ``config``, and no more.

    Writes, overwrites and retention purges need PutObject, AbortMultipartUpload and
    DeleteObject under the prefix; search and the connection check read with GetObject; listing
    is limited to the prefix by the ``s3:prefix`` condition. SSE-KMS adds GenerateDataKey
    (writes) and Decrypt (reads and multipart completion) on the key.
    """
    statements: list[dict[str, Any]] = [
        _allow(
            "AstralogWriteBatches",
            ["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
            _objects_arn(config),
        ),
        _allow("AstralogReadBatches", ["s3:GetObject"], _objects_arn(config)),
        _allow("AstralogListPrefix", ["s3:ListBucket"], bucket_arn(config)),
    ]
    if config.prefix:
        prefixes = [config.prefix, f"{config.prefix}/*"]
        statements[-1]["Condition"] = {"StringLike": {"s3:prefix": prefixes}}
    if config.sse == "aws:kms" and config.kms_key_id:
        statements.append(_kms_statement(config, config.kms_key_id))
    return {"Version": "2012-10-17", "Statement": statements}


def _allow(sid: str, actions: list[str], resource: str) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}


def _kms_statement(config: S3Config, key_id: str) -> dict[str, Any]:
    statement = _allow("AstralogSseKms", ["kms:GenerateDataKey", "kms:Decrypt"], key_id)
    if not re.fullmatch(r"arn:aws[a-z-]*:kms:[^:]+:\d{12}:key/.+", key_id):
        # An alias or bare key id is not a resource IAM matches on: allow any key, only via S3.
        statement["Resource"] = "*"
        via = f"s3.{config.region}.amazonaws.com"
        statement["Condition"] = {"StringEquals": {"kms:ViaService": via}}
    return statement


def trust_policy(config: S3Config, astralog_principal_arn: str) -> dict[str, Any]:
    """The trust policy of the customer's role: Astralog's principal, only with our external id."""
    if config.credentials != "assume_role" or config.external_id is None:
        raise ValueError("a trust policy belongs to credentials='assume_role'")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AstralogAssumeRole",
                "Effect": "Allow",
                "Principal": {"AWS": astralog_principal_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": config.external_id}},
            }
        ],
    }
