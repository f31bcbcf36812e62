"""OpenID Connect relying party: discovery, the authorization request, the code exchange, and the
checks on ID tokens and back-channel logout tokens. Stage: SSO protocol (the routes drive it; it
speaks to an org's IdP only through the egress guard).

What it promises:

* Every request to a provider (discovery, JWKS, token endpoint) goes through
  :mod:`astralog.security.egress`: the host is resolved once, refused if private, loopback or a
  metadata service (unless ``ASTRALOG_SSO__ALLOW_PRIVATE_NETWORKS`` allows it), the connection
  goes to the checked address only, redirects are never followed and a body is read up to 1 MiB.
* The discovery document must name exactly the configured issuer (OIDC Discovery 1.0 §4.3).
* authlib builds the authorization URL (code flow, ``state``, ``nonce``, PKCE S256) and redeems
  the code as a confidential client (``client_secret_basic``).
* A token is accepted only when signed with an allow-listed asymmetric algorithm by a key from
  the issuer's discovery JWKS (never ``jwk``/``jku``/``x5u`` headers); an unknown ``kid``
  refetches the JWKS once (key rotation), at most every ``jwks_refresh_seconds``. Then ``iss``
  exactly, ``aud`` (and ``azp`` when there are several audiences), ``exp``, ``iat``, ``nonce``.
* Failures raise :class:`SsoFailure` with a short ``reason`` (shown to the browser as
  ``?signin_error=<reason>`` and audited) and a message an admin can act on.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet
from urllib3.exceptions import HTTPError

from astralog.errors import BadRequest
from astralog.security.egress import PinViolation, check_endpoint, pinned_pool_manager
from astralog.security.egress.addresses import ALLOW_SETTING
from astralog.settings import SsoSettings

MAX_BODY = 1 << 20
MAX_TOKEN = 64 * 1024
LOGOUT_TOKEN_SECONDS = 600  # how old a logout token without its own 'exp' may be
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class SsoFailure(BadRequest):
    """A sign-in through an org's identity provider was refused; ``reason`` is a short code."""

    title = "Single sign-on failed"
    slug = "sso-failed"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


# ---- talking to a provider through the egress guard ------------------------------------------


@dataclass(frozen=True)
class Response:
    """Just enough of a response for authlib's token parsing and our JSON reads."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise SsoFailure("provider_error", f"the provider answered HTTP {self.status_code}")


@dataclass(frozen=True)
class Egress:
    """Requests to providers, each to an endpoint checked by the egress guard."""

    allow_networks: tuple[str, ...] = ()
    allow_http: bool = False
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, sso: SsoSettings) -> Egress:
        return cls(tuple(sso.allow_private_networks), sso.allow_http, sso.http_timeout_seconds)

    def check_url(self, url: str, what: str) -> str:
        """``url`` if it may be a provider endpoint (http(s), no credentials or fragment)."""
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes or not parts.netloc or "@" in parts.netloc:
            allow = (
                " (plain http is allowed only for a test provider, with ASTRALOG_SSO__ALLOW_HTTP"
                "=true)"
                if parts.scheme == "http"
                else ""
            )
            raise SsoFailure(
                "bad_endpoint",
                f"the provider's {what} {url[:120]!r} is not an {' or '.join(schemes)} URL{allow}",
            )
        if parts.fragment:
            raise SsoFailure("bad_endpoint", f"the provider's {what} has a fragment")
        return url

    def request(
        self, method: str, url: str, *, body: str | None = None, headers: Mapping[str, str] = {}
    ) -> Response:
        parts = urlsplit(self.check_url(url, "endpoint"))
        try:
            checked = check_endpoint(
                f"{parts.scheme}://{parts.netloc}",
                schemes=("https",),
                allow_http=self.allow_http,
                allow_networks=self.allow_networks,
            )
        except BadRequest as exc:  # refused as a request target, or not resolvable
            detail = exc.detail.replace(ALLOW_SETTING, "ASTRALOG_SSO__ALLOW_PRIVATE_NETWORKS")
            raise SsoFailure("unsafe_endpoint", detail) from exc
        pool = pinned_pool_manager(checked)
        try:
            answer = pool.request(
                method,
                url,
                body=body,
                headers=dict(headers),
                timeout=self.timeout,
                preload_content=False,
                retries=False,
            )
            content = answer.read(MAX_BODY + 1)
            answer.release_conn()
        except (HTTPError, PinViolation, OSError) as exc:
            raise SsoFailure(
                "provider_unreachable",
                f"the provider at {checked.authority} could not be reached: {type(exc).__name__}",
            ) from exc
        finally:
            pool.clear()
        if len(content) > MAX_BODY:
            raise SsoFailure("provider_error", f"the provider's answer from {url} is over 1 MiB")
        return Response(answer.status, content)

    def get_json(self, url: str, what: str) -> dict[str, Any]:
        response = self.request("GET", url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise SsoFailure("provider_error", f"{what} at {url} answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise SsoFailure("provider_error", f"{what} at {url} is not a JSON object")
        return data


class _AuthlibSession:
    """The one method authlib's OAuth2Client needs from a session, over :class:`Egress`."""

    def __init__(self, egress: Egress) -> None:
        self.egress = egress

    def post(
        self, url: str, data: dict[str, str], headers: Mapping[str, str], auth: Any, **_: Any
    ) -> Response:
        url, prepared, body = auth.prepare("POST", url, dict(headers), urlencode(data))
        return self.egress.request("POST", url, body=body, headers=prepared)


# ---- discovery and keys --------------------------------------------------------------------


@dataclass(frozen=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None
    iss_parameter: bool = False  # RFC 9207: the provider puts ``iss`` in its responses


def parse_metadata(doc: Mapping[str, Any], issuer: str, egress: Egress) -> Metadata:
    if doc.get("issuer") != issuer:
        raise SsoFailure(
            "issuer_mismatch",
            f"the discovery document names issuer {str(doc.get('issuer'))[:120]!r}, not the "
            f"configured {issuer!r}; use exactly the issuer the provider publishes",
        )
    urls = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = doc.get(name)
        if not isinstance(value, str):
            raise SsoFailure("provider_error", f"the discovery document has no {name}")
        urls[name] = egress.check_url(value, name)
    end = doc.get("end_session_endpoint")
    return Metadata(
        issuer,
        end_session_endpoint=egress.check_url(end, "end_session_endpoint")
        if isinstance(end, str)
        else None,
        iss_parameter=doc.get("authorization_response_iss_parameter_supported") is True,
        **urls,
    )


class KeySource(Protocol):
    def key(self, kid: str | None, alg: str) -> Key: ...


@dataclass
class _Cached:
    at: float
    value: Any


@dataclass
class IssuerKeys:
    """One issuer's JWKS: fetched on first use, refetched on an unknown ``kid`` (rotation)."""

    fetch: Callable[[], KeySet]
    refresh_seconds: float
    keys: KeySet | None = None
    fetched_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self, kid: str | None, alg: str) -> Key:
        with self.lock:
            if self.keys is None:
                self._refresh()
            found = _pick(self.keys, kid, alg)
            if found is None and time.monotonic() - self.fetched_at >= self.refresh_seconds:
                self._refresh()  # a key id we have not seen: the provider may have rotated
                found = _pick(self.keys, kid, alg)
        if found is None:
            raise SsoFailure(
                "unknown_key", f"the token's key id {str(kid)[:60]!r} is not in the provider's JWKS"
            )
        return found

    def _refresh(self) -> None:
        self.keys = self.fetch()
        self.fetched_at = time.monotonic()


def _pick(keys: KeySet | None, kid: str | None, alg: str) -> Key | None:
    candidates = [
        k for k in (keys or ()) if (kid is None or k.kid == kid) and k.get("use", "sig") == "sig"
    ]
    candidates = [k for k in candidates if k.get("alg") in (None, alg)]
    # Without a kid only an unambiguous key will do.
    return candidates[0] if len(candidates) == 1 else None


class Providers:
    """Discovery documents and JWKS of every provider this process talks to, cached."""

    def __init__(self, sso: SsoSettings, egress: Egress | None = None) -> None:
        self.sso = sso
        self.egress = egress or Egress.from_settings(sso)
        self._metadata: dict[str, _Cached] = {}
        self._keys: dict[str, IssuerKeys] = {}
        self._lock = threading.Lock()
        self.seen = SeenTokens()  # logout tokens' jti, so a replayed one does nothing

    def metadata(self, issuer: str, *, fresh: bool = False) -> Metadata:
        cached = self._metadata.get(issuer)
        if not fresh and cached and time.monotonic() - cached.at < self.sso.metadata_cache_seconds:
            return cached.value  # type: ignore[no-any-return]
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = self.egress.get_json(url, "the discovery document")
        meta = parse_metadata(doc, issuer, self.egress)
        self._metadata[issuer] = _Cached(time.monotonic(), meta)
        return meta

    def keys(self, issuer: str) -> IssuerKeys:
        with self._lock:
            if issuer not in self._keys:
                self._keys[issuer] = IssuerKeys(
                    lambda: self._fetch_keys(issuer), self.sso.jwks_refresh_seconds
                )
            return self._keys[issuer]

    def _fetch_keys(self, issuer: str) -> KeySet:
        doc = self.egress.get_json(self.metadata(issuer).jwks_uri, "the JWKS")
        keys = [k for k in doc.get("keys", []) if isinstance(k, dict) and "d" not in k]
        try:
            return KeySet.import_key_set({"keys": keys})
        except (JoseError, ValueError, TypeError) as exc:
            raise SsoFailure("provider_error", f"the provider's JWKS is malformed: {exc}") from exc


# ---- the authorization request and the code exchange ---------------------------------------


@dataclass(frozen=True)
class Attempt:
    """The secrets of one sign-in attempt, kept server-side until the callback."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Attempt:
        return cls(generate_token(43), generate_token(43), generate_token(64))


def authorization_url(
    meta: Metadata,
    client_id: str,
    redirect_uri: str,
    scopes: Collection[str],
    attempt: Attempt,
    **extra: str,
) -> str:
    client = OAuth2Client(
        None,
        client_id,
        redirect_uri=redirect_uri,
        scope=" ".join(scopes),
        code_challenge_method="S256",
    )
    url, _ = client.create_authorization_url(
        meta.authorization_endpoint,
        state=attempt.state,
        code_verifier=attempt.verifier,
        nonce=attempt.nonce,
        **extra,
    )
    return str(url)


def exchange_code(
    egress: Egress,
    meta: Metadata,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> dict[str, Any]:
    """Redeem ``code`` (with the PKCE verifier) for tokens; the provider refuses a replay."""
    client = OAuth2Client(
        _AuthlibSession(egress),
        client_id,
        client_secret,
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
        redirect_uri=redirect_uri,
    )
    try:
        token = client.fetch_token(
            meta.token_endpoint,
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
        )
    except OAuth2Error as exc:
        raise SsoFailure(
            "code_rejected",
            f"the provider refused the authorization code: {exc.error} "
            f"({(exc.description or '')[:200]})",
        ) from exc
    except ValueError as exc:
        raise SsoFailure("provider_error", f"the token endpoint's answer: {exc}") from exc
    if not isinstance(token.get("id_token"), str):
        raise SsoFailure("no_id_token", "the provider returned no ID token: is 'openid' a scope?")
    return dict(token)


def check_response_issuer(received: str | None, expected: str, *, required: bool) -> None:
    """RFC 9207: the ``iss`` of an authorization response names the provider that sent it, so a
    response from another of the org's providers (a mix-up) is refused before the code leaves."""
    if received is None:
        if required:
            raise SsoFailure(
                "iss_missing",
                "the authorization response carries no 'iss' (RFC 9207), which "
                "is required when an org has several identity providers",
            )
        return
    if received != expected:
        raise SsoFailure(
            "issuer_mismatch",
            f"the response came from issuer {received[:120]!r}, not {expected!r} (mix-up refused)",
        )


# ---- token checks ----------------------------------------------------------------------------


def _header(token: str) -> dict[str, Any]:
    """The JOSE header, read before any verification only to choose the key."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError) as exc:
        raise SsoFailure("bad_token", "the token is not a JWS") from exc
    if not isinstance(header, dict) or len(token) > MAX_TOKEN:
        raise SsoFailure("bad_token", "the token is not a JWS of a sensible size")
    return header


@dataclass(frozen=True)
class TokenCheck:
    """What a token from one provider is checked against: its issuer, our client id, its keys."""

    issuer: str
    client_id: str
    keys: KeySource
    algorithms: Collection[str]
    leeway: int = 60
    now: float | None = None


def _decode(token: str, keys: KeySource, algorithms: Collection[str]) -> dict[str, Any]:
    header = _header(token)
    alg = header.get("alg")
    if alg not in algorithms:  # before any key is looked up: none, HS*, anything not listed
        raise SsoFailure("bad_algorithm", f"algorithm {str(alg)[:20]!r} is not allowed")
    key = keys.key(_text_or_none(header.get("kid")), str(alg))
    try:
        return dict(jwt.decode(token, key, algorithms=[str(alg)]).claims)
    except SsoFailure:
        raise
    except (JoseError, ValueError, TypeError) as exc:
        raise SsoFailure(
            "bad_token", f"the token's signature or shape is invalid: {type(exc).__name__}"
        ) from exc


def _check_claims(claims: dict[str, Any], check: TokenCheck) -> None:
    registry = jwt.JWTClaimsRegistry(
        now=int(check.now if check.now is not None else time.time()),
        leeway=check.leeway,
        iss={"essential": True, "value": check.issuer},
        aud={"essential": True, "value": check.client_id},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        what = getattr(exc, "claim", None) or str(exc)[:60]
        reason = "token_expired" if "expired" in type(exc).__name__.lower() else "bad_claims"
        raise SsoFailure(reason, f"the token's claims are not acceptable: {what}") from exc
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != check.client_id:
        raise SsoFailure("bad_claims", "a token for several audiences must name us in 'azp'")


def verify_id_token(token: str, check: TokenCheck, nonce: str) -> dict[str, Any]:
    """The claims of an ID token, after every check of OIDC Core §3.1.3.7."""
    claims = _decode(token, check.keys, check.algorithms)
    if "exp" not in claims:
        raise SsoFailure("bad_claims", "the ID token has no 'exp'")
    _check_claims(claims, check)
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not same(presented, nonce):
        raise SsoFailure("nonce_mismatch", "the ID token's nonce is not this sign-in's")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise SsoFailure("bad_claims", "the ID token has no subject")
    return claims


def verify_logout_token(token: str, check: TokenCheck) -> dict[str, Any]:
    """The claims of a back-channel logout token (OIDC Back-Channel Logout 1.0 §2.6)."""
    claims = _decode(token, check.keys, check.algorithms)
    _check_claims(claims, check)
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
        raise SsoFailure("bad_claims", "not a logout token: no back-channel logout event")
    if "nonce" in claims:
        raise SsoFailure("bad_claims", "a logout token must not carry a nonce")
    if not isinstance(claims.get("jti"), str):
        raise SsoFailure("bad_claims", "a logout token needs a 'jti'")
    if not (isinstance(claims.get("sid"), str) or isinstance(claims.get("sub"), str)):
        raise SsoFailure("bad_claims", "a logout token names a 'sid' or a 'sub'")
    if "exp" not in claims and (check.now or time.time()) - claims["iat"] > LOGOUT_TOKEN_SECONDS:
        raise SsoFailure("token_expired", "the logout token (without 'exp') is too old")
    return claims


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def same(a: str, b: str) -> bool:
    """Constant-time equality of two secrets (state, nonce)."""
    return hmac.compare_digest(a.encode(), b.encode())


class SeenTokens:
    """``jti`` values of logout tokens already used, until they expire: a replay does nothing."""

    def __init__(self, limit: int = 10_000) -> None:
        self._seen: dict[str, float] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def first_use(self, jti: str, expires: float) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) >= self._limit:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if jti in self._seen and self._seen[jti] > now:
                return False
            self._seen[jti] = max(expires, now + 600)
            return True
