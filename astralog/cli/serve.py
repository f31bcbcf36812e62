"""``astralog serve`` and ``astralog init``: start the service, bootstrap a data dir.

Stage: the top of the process. Refuses in one line, before any secret is printed or state is
written, when the data dir is served already or the port is taken.
"""

from __future__ import annotations

import argparse
import errno
import socket
import ssl
import sys
from typing import TYPE_CHECKING, Any

from astralog.cli.common import open_runtime
from astralog.errors import ConfigError

if TYPE_CHECKING:
    from astralog.runtime import Bootstrap
    from astralog.settings import Settings


def banner(settings: Settings, boot: Bootstrap) -> str:
    url = settings.server.url()
    curl = (
        f"curl -sS -X POST {url}/v1/ingest \\\n"
        f"  -H 'Authorization: Bearer {boot.ingest_key}' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        '  -d \'{"message":"hello from the quickstart","level":"info","service":"demo"}\''
    )
    return "\n".join(
        [
            "",
            "Astralog is set up (first start). These secrets are shown once; store them now.",
            f"  URL:             {url}",
            f"  Org:             {boot.org['name']} ({boot.org['id']}), source "
            f"{boot.source['name']} ({boot.source['id']})",
            f"  Admin token:     {boot.admin_token}",
            f"  Operator token:  {boot.operator_token}",
            f"  Ingest key:      {boot.ingest_key}",
            "",
            "Send an event:",
            curl,
            "",
        ]
    )


def _preflight(settings: Settings) -> None:
    """Refuse to start, in one line, when the data dir is served already or the port is taken.

    The data dir first: a second ``make run`` also asks for the same port, and the data dir is
    the real reason."""
    from astralog.ingest.wal.recovery import lock_directory

    _check_tls(settings)  # before the lock below creates the data dir: a refusal writes nothing
    wal = settings.path(settings.wal.directory)
    try:
        lock_directory(wal).close()  # released at once; the server takes it again in its lifespan
    except ConfigError:
        raise ConfigError(
            f"Astralog is already running on this data dir ({wal} is locked); "
            "stop it or set ASTRALOG_DATA_DIR"
        ) from None
    _check_port(settings.server.host, settings.server.port)


def _check_tls(settings: Settings) -> None:
    """A certificate that cannot be served is refused at start, not at the first handshake."""
    server = settings.server
    if not server.tls_cert_file:
        return
    where = (
        f"ASTRALOG_SERVER__TLS_CERT_FILE={server.tls_cert_file} and "
        f"ASTRALOG_SERVER__TLS_KEY_FILE={server.tls_key_file}"
    )
    try:
        _refuse_encrypted_key(server.tls_key_file or server.tls_cert_file)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            server.tls_cert_file, server.tls_key_file, password=_no_passphrase
        )
        _refuse_out_of_date(server.tls_cert_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"cannot serve HTTPS with {where}: {exc}; give a readable PEM certificate chain and "
            "its private key"
        ) from None


def _no_passphrase() -> str:
    """OpenSSL would prompt on the terminal (and hang a service) for an encrypted key."""
    raise ValueError(_ENCRYPTED)


_ENCRYPTED = "encrypted private keys are not supported: decrypt it (openssl pkey -in k -out k2)"


def _refuse_encrypted_key(path: str) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(path, "rb") as file:
        pem = file.read()
    try:
        load_pem_private_key(pem, password=None)
    except TypeError:  # cryptography's answer to an encrypted key without a password
        raise ValueError(_ENCRYPTED) from None
    except ValueError:
        pass  # not a key cryptography reads: OpenSSL's load says what is wrong


def _refuse_out_of_date(path: str) -> None:
    """OpenSSL loads an expired certificate happily; every client would then refuse it."""
    from datetime import UTC, datetime

    from cryptography import x509

    with open(path, "rb") as file:
        cert = x509.load_pem_x509_certificate(file.read())
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    now = datetime.now(UTC)
    if not start <= now <= end:
        state = "expired" if now > end else "not valid yet"
        raise ValueError(
            f"the certificate is {state}: valid from {start:%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M} UTC, now is {now:%Y-%m-%d %H:%M} UTC"
        )


def _tls_options(settings: Settings) -> dict[str, Any]:
    """HTTPS served here when a certificate is set; HSTS whenever clients arrive over HTTPS,
    through a TLS-terminating proxy too (browsers ignore the header on plain HTTP)."""
    server = settings.server
    options: dict[str, Any] = {}
    if server.tls_cert_file:
        options |= {"ssl_certfile": server.tls_cert_file, "ssl_keyfile": server.tls_key_file}
    https = bool(server.tls_cert_file) or server.url().startswith("https://")
    if https and server.hsts_seconds:
        options["headers"] = [("Strict-Transport-Security", f"max-age={server.hsts_seconds}")]
    return options


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} is in use; set ASTRALOG_SERVER__PORT (or --port)"
                if exc.errno == errno.EADDRINUSE
                else f"cannot listen on {host}:{port}: {exc.strerror}; "
                "set ASTRALOG_SERVER__HOST / ASTRALOG_SERVER__PORT (or --host / --port)"
            ) from None


def _proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default; only configured proxies may
    set the client address (the audit trail and the metrics loopback check rely on it)."""
    trusted = settings.server.trusted_proxies
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted)}


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from astralog import logs
    from astralog.api.app import create_app

    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if updates:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update=updates)}
        )
    _preflight(settings)  # before any secret is printed or state is written
    runtime = open_runtime(settings)
    boot = runtime.bootstrap()
    if boot is not None:
        print(banner(settings, boot), flush=True)
    else:
        print(f"Astralog on {settings.server.url()} (data in {settings.data_dir})", flush=True)
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings, runtime)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Idle connections close; past max_connections uvicorn answers 503 rather than
        # accepting sockets until the process runs out of descriptors (bodies: BodyLimit).
        timeout_keep_alive=settings.server.keep_alive_seconds,
        limit_concurrency=settings.server.max_connections,
        **_proxy_options(settings),
        **_tls_options(settings),
    )
    return 0


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    runtime = open_runtime(settings)
    boot = runtime.bootstrap()
    if boot is None:
        print(f"already initialised: {settings.path(settings.control.database)}", file=sys.stderr)
        return 1
    print(banner(settings, boot))
    return 0


def tcp_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)
