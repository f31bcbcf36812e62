"""``/docs``: Swagger UI for the OpenAPI description, served by the service itself.

FastAPI's own page loads Swagger UI from a CDN and starts it with an inline script, so it is
blank offline and cannot run under the UI's strict CSP (``script-src 'self'``), on the very page
where admins paste tokens. Here the Swagger UI files come from the ``fastapi-offline`` package
(installed from PyPI, never committed) and the start-up script is a file of our own; the
security-headers middleware gives the page the same CSP as the UI.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.metadata import version
from typing import Final

from fastapi import APIRouter, Response

from astralog.errors import NotFound

router = APIRouter(include_in_schema=False)

_PACKAGE: Final = "fastapi_offline"
_VENDORED: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
# Ours: starts Swagger UI without an inline script. No validator badge (an outside request),
# and the "Authorize" button keeps the token in page memory only.
_INIT_JS: Final = b"""window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""
_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Astralog API</title>
<link rel="icon" href="/docs/assets/{v}/favicon.png">
<link rel="stylesheet" href="/docs/assets/{v}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/{v}/swagger-ui-bundle.js"></script>
<script src="/docs/assets/{v}/init.js"></script>
</body>
</html>
"""
IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str


@cache
def _version() -> str:
    """Changes with the package and with our script, so assets can be cached for good."""
    seed = f"{version(_PACKAGE)}:".encode() + _INIT_JS
    return hashlib.sha256(seed).hexdigest()[:12]


@cache
def _file(name: str) -> _File:
    if name == "init.js":
        return _File(_INIT_JS, "text/javascript; charset=utf-8")
    body = (resources.files(_PACKAGE) / "static" / name).read_bytes()
    return _File(body, _VENDORED[name])


@router.get("/docs")
def docs_page() -> Response:
    page = _PAGE.format(v=_version())
    return Response(
        page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )


@router.get("/docs/assets/{release}/{name}")
def docs_asset(release: str, name: str) -> Response:
    if release != _version() or (name not in _VENDORED and name != "init.js"):
        raise NotFound(f"no documentation file {name[:100]!r} in release {release[:20]!r}")
    found = _file(name)
    return Response(found.body, media_type=found.content_type, headers={"Cache-Control": IMMUTABLE})
