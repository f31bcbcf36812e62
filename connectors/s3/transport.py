"""The S3 client's transport: timeouts, retries, no redirects, no ``Expect: 100-continue``, the
endpoint pinned by the SSRF guard, and assumed-role credentials.
"""

from __future__ import annotations

from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioDeferredRefreshableCredentials
from aiobotocore.httpsession import AIOHTTPSession

from .config import S3Config


def client_config(config: S3Config, connector_args: dict[str, Any], attempts: int) -> AioConfig:
    return AioConfig(
        connector_args=connector_args,
        http_session_cls=_GuardedHTTPSession,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        # total_max_attempts counts the first try; botocore's "max_attempts" would count retries.
        retries={"mode": "standard", "total_max_attempts": attempts},
        s3={"addressing_style": config.addressing_style},
        request_checksum_calculation=config.checksums,
        response_checksum_validation=config.checksums,
        # The customer's endpoint is config.endpoint_url, never the host's AWS_ENDPOINT_URL*.
        ignore_configured_endpoint_urls=True,
        user_agent_extra="astralog",
    )


# aiobotocore ships no type hints, so its session class is Any to mypy.
class _GuardedHTTPSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's aiohttp session, with two defaults of aiohttp taken away.

    * Redirects are refused. aiohttp follows 3xx and aiobotocore offers no switch; a
      ``Location`` chosen by the server is a request target no SSRF check has seen (an IP
      literal even skips the pinned resolver). S3's region redirects are handled by botocore
      from the response, against the configured endpoint.
    * ``Expect: 100-continue`` is dropped. botocore adds it to uploads, and aiohttp waits for
      the "100 Continue" with no timeout at all (read_timeout does not cover it), so an endpoint
      that accepts the connection and stays silent would hang a write forever. The header is
      not signed (SigV4 leaves it out), so removing it changes nothing else.

    ``_get_session`` is where aiobotocore hands out the aiohttp session; tests cover both
    behaviours, so a change in aiobotocore cannot silently undo them. botocore's own region
    redirects are switched off separately (:func:`no_region_redirects`).
    """

    async def _get_session(self, proxy_url: str | None) -> Any:
        return _GuardedRequests(await super()._get_session(proxy_url))


class _GuardedRequests:
    def __init__(self, session: Any) -> None:
        self._session = session

    def request(self, *args: Any, **kwargs: Any) -> Any:
        headers = kwargs.get("headers")
        if headers is not None:
            headers.pop("Expect", None)  # a case-insensitive multidict
        return self._session.request(*args, allow_redirects=False, **kwargs)


def no_region_redirects(context: dict[str, Any], **_: Any) -> None:
    """Keep botocore from re-sending a request to the region a server names.

    botocore marks each S3 request as not yet redirected (``before-parameter-build``) and, on a
    wrong-region answer, re-resolves the endpoint for the new region and sends again; for an
    answer without a region it HEADs the bucket to ask, and a server answering 3xx to that as
    well sends aiobotocore into endless recursion. Marking the request as already redirected
    turns all of it off: the configured region is the one used, and a mismatch is reported
    with the region to set (:func:`.errors.explain_client_error`).
    """
    redirect = context.get("s3_redirect")
    if redirect is not None:
        redirect["redirected"] = True


class FixedCredentials:
    """A credential provider that always answers with the credentials it was given."""

    METHOD = "astralog"

    def __init__(self, credentials: AioDeferredRefreshableCredentials) -> None:
        self._credentials = credentials

    async def load(self) -> AioDeferredRefreshableCredentials:
        return self._credentials
