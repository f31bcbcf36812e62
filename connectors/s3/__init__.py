"""The S3-compatible destination: Parquet batches in the customer's own bucket.

AWS S3, Cloudflare R2, Google Cloud Storage's XML API, MinIO or anything else that speaks S3.
One module per concern, as the rest of the connectors:

* :mod:`.config`: :class:`S3Config` (stored, secret-free), :class:`S3Secrets`, provider notes;
* :mod:`.policy`: the least-privilege and trust policies an admin pastes into their cloud;
* :mod:`.errors`: botocore errors as retryable or permanent, in words a person can act on;
* :mod:`.transport`: the client's timeouts, retries, refused redirects and pinned endpoint;
* :mod:`.connector`: :class:`S3Connector`, the contract of :mod:`astralog.connectors.base`;
* :mod:`.kind`: the S3 kind, as the API configures and builds it.
"""

from .config import PROVIDER_NOTES, S3Config, S3Secrets, new_external_id
from .connector import S3Connector
from .errors import is_retryable_error
from .kind import KIND
from .policy import least_privilege_policy, trust_policy

__all__ = [
    "KIND",
    "PROVIDER_NOTES",
    "S3Config",
    "S3Connector",
    "S3Secrets",
    "is_retryable_error",
    "least_privilege_policy",
    "new_external_id",
    "trust_policy",
]
