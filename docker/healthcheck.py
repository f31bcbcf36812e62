"""The image's HEALTHCHECK: exit 0 when this container's /readyz answers 200.

Asks the loopback address on the configured port, over HTTPS when the service serves TLS itself
(the certificate names the public host, not 127.0.0.1, so it is not verified on this one hop).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("ASTRALOG_SERVER__PORT", "8080")
    context = None
    scheme = "http"
    if os.environ.get("ASTRALOG_SERVER__TLS_CERT_FILE"):
        scheme = "https"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{scheme}://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2.5, context=context) as answer:  # noqa: S310
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
