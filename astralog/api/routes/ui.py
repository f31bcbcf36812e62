"""The web UI: static files served by the service itself at ``/``.

``GET /`` from an Elasticsearch client rather than a browser (its ``Authorization`` or ``Accept``
headers tell them apart) is answered by :mod:`astralog.api.routes.elasticsearch`, whose routes
come first; every other ``GET /`` is this page.

Only files that sit directly in ``astralog/ui/`` and have a known extension are served; any other
name answers 404 before the file system is touched, so no path can climb out of the folder.

Caching: the HTML is revalidated on every load (``no-cache`` with an ETag). It names its assets
under a version segment, ``/ui/<version>/app.js``, derived from the content of every asset, so the
browser may keep those for a year (``immutable``) and a new release still loads new code. ES module
imports are relative (``./api.js``), so they inherit the version segment.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request, Response

from astralog.api.middleware import HTML_CSP
from astralog.errors import NotFound

router = APIRouter(include_in_schema=False)

UI_DIR: Final = Path(__file__).resolve().parents[2] / "ui"
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
}
# A page of the app: deep links and reloads land on the same shell, the script picks the view.
PAGES: Final = (
    "/", "/sources", "/storage", "/retention", "/audit", "/data", "/members", "/security",
    "/account", "/invitation", "/plans", "/alerts", "/alert-endpoints", "/silences",
)  # fmt: skip
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VERSION: Final = re.compile(r"^[0-9a-f]{12}$")
_VERSION_MARK: Final = "__V__"

CSP: Final = HTML_CSP  # the same policy as /docs, from the one place that defines it
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
REVALIDATE: Final = "no-cache"
IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class Assets:
    """The folder's files, reread only when one of them changed (mtime and size)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._files: dict[str, Asset] = {}
        self.version = ""

    def _current_stamp(self) -> tuple[tuple[str, int, int], ...]:
        entries = []
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and path.suffix in CONTENT_TYPES and _NAME.match(path.name):
                stat = path.stat()
                entries.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(entries)

    def _load(self) -> None:
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return
        raw = {name: (self.folder / name).read_bytes() for name, _, _ in stamp}
        digest = hashlib.sha256()
        for name, body in raw.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
        version = digest.hexdigest()[:12]
        files = {}
        for name, body in raw.items():
            if name == "index.html":
                body = body.replace(_VERSION_MARK.encode(), version.encode())
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[name] = Asset(body, CONTENT_TYPES[Path(name).suffix], etag)
        self._files, self._stamp, self.version = files, stamp, version

    def get(self, name: str) -> Asset:
        if not _NAME.match(name) or Path(name).suffix not in CONTENT_TYPES:
            raise NotFound(f"no UI file named {name[:100]!r}")
        self._load()
        asset = self._files.get(name)
        if asset is None:
            raise NotFound(f"no UI file named {name[:100]!r}")
        return asset


ASSETS: Final = Assets(UI_DIR)


def _respond(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


def index(request: Request) -> Response:
    return _respond(request, ASSETS.get("index.html"), REVALIDATE)


for _page in PAGES:
    router.add_api_route(
        _page, index, methods=["GET", "HEAD"], name=f"ui-page{_page.replace('/', '-')}"
    )


@router.api_route("/favicon.ico", methods=["GET", "HEAD"])
def favicon(request: Request) -> Response:
    return _respond(request, ASSETS.get("logo.svg"), REVALIDATE)


@router.api_route("/ui/{path:path}", methods=["GET", "HEAD"])
def asset(path: str, request: Request) -> Response:
    """``/ui/<name>`` (revalidated) or ``/ui/<version>/<name>`` (immutable when current)."""
    version, _, name = path.rpartition("/")
    if version and not _VERSION.match(version):
        raise NotFound(f"no UI file at {path[:100]!r}")
    found = ASSETS.get(name)
    cache = IMMUTABLE if version and version == ASSETS.version else REVALIDATE
    return _respond(request, found, cache)
