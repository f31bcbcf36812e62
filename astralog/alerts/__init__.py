"""Saved searches' alerts and their delivery, one module per stage, imports running down:

Delivery (signed, durable, at least once):

* :mod:`astralog.security.webhook_signing`: Standard Webhooks v1 secrets (``whsec_``) and
  signatures, several during a secret rotation's overlap.
* :mod:`.outbox`: the durable outbox in ``<data_dir>/alerts.sqlite3``: one row per (message,
  endpoint), idempotent on the message id, leased to the worker; the delivery log and replay.
* :mod:`.channels`: one attempt: a webhook POST through the SSRF guard pinned to the checked
  address (no redirects, no proxies, a header deny-list, a timeout, a bounded read), or e-mail.
* :mod:`.deliver`: the worker: retry schedule with jitter, ``Retry-After``, 410 disables the
  endpoint, ``failed`` rows stay visible; metrics and one log line per failure.

The endpoints themselves (events, sealed secrets) live in :mod:`astralog.controlplane.endpoints`.
"""
