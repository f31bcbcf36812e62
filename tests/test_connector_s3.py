"""The S3 connector against a real S3 HTTP endpoint (moto_server): the shared contract, plus
multipart, SSE, pruning at scale, the connection check's diagnoses, credentials, SSRF pinning
and the least-privilege policy (exercised through moto's IAM evaluation)."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from pydantic import ValidationError

from astralog.connectors.base import ConnectorError
from astralog.connectors.s3 import (
    PROVIDER_NOTES,
    S3Config,
    S3Connector,
    S3Secrets,
    is_retryable_error,
    least_privilege_policy,
    new_external_id,
    trust_policy,
)
from astralog.connectors.s3 import connector as s3mod
from astralog.security.egress import check_endpoint, pinned_connector_args
from tests.connector_contract import T0, ConnectorContract, H, batch_key, make_events, run
from tests.s3_server import REGION, TEST_KEY_ID, TEST_SECRET, MotoServer, S3Bucket

pytest_plugins = ["tests.s3_server"]  # the moto_server, moto_iam_server and s3_bucket fixtures

SECRETS = S3Secrets.from_plain(TEST_KEY_ID, TEST_SECRET)
MOTO_ACCOUNT = "123456789012"  # moto's default account id
STEPS = ["credentials", "write", "read", "list", "delete"]


def s3_config(bucket: S3Bucket, **overrides: Any) -> S3Config:
    fields = {
        "bucket": bucket.name,
        "endpoint_url": bucket.endpoint_url,
        "prefix": "logs",
        "addressing_style": "path",
        "max_attempts": 2,
    }
    return S3Config.model_validate(fields | overrides)


def connector_for(
    bucket: S3Bucket, secrets: S3Secrets | None = SECRETS, **overrides: Any
) -> S3Connector:
    return S3Connector(s3_config(bucket, **overrides), secrets, row_group_rows=1024)


@functools.cache
def _reader(endpoint_url: str) -> Any:
    """A plain boto3 client: objects are read back without the connector under test."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=TEST_KEY_ID,
        aws_secret_access_key=TEST_SECRET,
    )


def read_table(connector: S3Connector, relative_key: str) -> pa.Table:
    config = connector.config
    full = f"{config.prefix}/{relative_key}" if config.prefix else relative_key
    body = _reader(str(config.endpoint_url)).get_object(Bucket=config.bucket, Key=full)["Body"]
    return pq.read_table(io.BytesIO(body.read()))


def head(bucket: S3Bucket, key: str) -> dict[str, Any]:
    response: dict[str, Any] = bucket.server.admin("s3").head_object(Bucket=bucket.name, Key=key)
    return response


class TestS3Connector(ConnectorContract):
    @pytest.fixture
    def connector(self, s3_bucket: S3Bucket) -> S3Connector:
        return connector_for(s3_bucket)

    def stored_rows(self, connector: S3Connector, key: str) -> int:  # type: ignore[override]
        return read_table(connector, key).num_rows


# -- layout and independent readers ----------------------------------------------------------


def test_objects_sit_under_the_prefix_in_hive_layout(s3_bucket: S3Bucket) -> None:
    written = run(
        connector_for(s3_bucket).write_batch(batch_key("acme", "web", T0), make_events(3))
    )
    full = "logs/org=acme/source=web/dt=2024-05-01/hour=10/b1.parquet"
    assert written.key == full.removeprefix("logs/")
    assert written.uri == f"s3://{s3_bucket.name}/{full}"
    assert s3_bucket.keys() == [full]
    assert "ServerSideEncryption" not in head(s3_bucket, full)


def test_pyarrow_s3_filesystem_reads_the_partitions(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    connector = connector_for(s3_bucket)
    run(connector.write_batch(batch_key("acme", "web", T0), make_events(7, source_id="web")))
    run(connector.write_batch(batch_key("acme", "api", T0 + H), make_events(3, source_id="api")))
    assert all(c.ok for c in run(connector.probe()))  # the canary leaves nothing behind

    filesystem = pafs.S3FileSystem(
        access_key=TEST_KEY_ID,
        secret_key=TEST_SECRET,
        endpoint_override=f"127.0.0.1:{s3_bucket.server.port}",
        scheme="http",
        region=REGION,
    )
    dataset = ds.dataset(
        f"{s3_bucket.name}/logs", filesystem=filesystem, format="parquet", partitioning="hive"
    )
    web = dataset.to_table(filter=(ds.field("source") == "web") & (ds.field("org") == "acme"))
    assert web.num_rows == 7
    assert sorted(web.column("Body").to_pylist())[0] == "message 0 from web"
    assert dataset.count_rows() == 10


def test_read_batches_returns_the_rows_of_exactly_those_keys(s3_bucket: S3Bucket) -> None:
    connector = connector_for(s3_bucket)
    web = run(connector.write_batch(batch_key("acme", "web", T0), make_events(4, tag="w")))
    api = run(connector.write_batch(batch_key("acme", "api", T0), make_events(2, tag="a")))
    table = run(connector.read_batches([web.key, api.key]))
    assert sorted(table.column("EventId").to_pylist()) == sorted(
        [f"w-{i}" for i in range(4)] + [f"a-{i}" for i in range(2)]
    )
    assert run(connector.read_batches([])).num_rows == 0
    with pytest.raises(ValueError, match="not the key of a batch"):
        run(connector.read_batches(["../../other-tenant/secret.parquet"]))
    with pytest.raises(ConnectorError) as caught:
        run(connector.read_batches([web.key.replace("b1", "missing")]))
    assert not caught.value.retryable


# -- multipart and encryption ------------------------------------------------------------------


def big_table(rows: int = 16_000) -> pa.Table:
    """About 7 MiB of Parquet: random bodies do not compress."""
    table = make_events(rows)
    body_type = table.schema.field("Body").type
    bodies = pa.array([base64.b64encode(os.urandom(450)).decode() for _ in range(rows)], body_type)
    return table.set_column(table.schema.get_field_index("Body"), "Body", bodies)


def test_large_batch_goes_up_in_parts_with_sse_s3(s3_bucket: S3Bucket) -> None:
    connector = connector_for(
        s3_bucket, multipart_threshold=2**20, multipart_part_size=5 * 2**20, sse="AES256"
    )
    table = big_table()
    written = run(connector.write_batch(batch_key("acme", "web", T0), table))
    assert written.bytes > 5 * 2**20, "the test needs at least two parts"

    meta = head(s3_bucket, f"logs/{written.key}")
    assert meta["ETag"].strip('"').endswith("-2")  # a multipart ETag counts its parts
    assert meta["ServerSideEncryption"] == "AES256"
    assert meta["ContentLength"] == written.bytes
    assert read_table(connector, written.key).num_rows == table.num_rows
    uploads = s3_bucket.server.admin("s3").list_multipart_uploads(Bucket=s3_bucket.name)
    assert not uploads.get("Uploads")


def test_small_batch_is_one_put_with_sse_kms(s3_bucket: S3Bucket) -> None:
    key_arn = f"arn:aws:kms:{REGION}:{MOTO_ACCOUNT}:key/6f1c9b0e-0000-4000-8000-000000000001"
    connector = connector_for(s3_bucket, sse="aws:kms", kms_key_id=key_arn)
    written = run(connector.write_batch(batch_key("acme", "web", T0), make_events(5)))
    meta = head(s3_bucket, f"logs/{written.key}")
    assert "-" not in meta["ETag"].strip('"')
    assert (meta["ServerSideEncryption"], meta["SSEKMSKeyId"]) == ("aws:kms", key_arn)
    assert all(c.ok for c in run(connector.probe())), "the probe checks the encryption it asked"


def test_a_failed_multipart_upload_is_aborted(s3_bucket: S3Bucket) -> None:
    # model_construct skips validation: 1 MiB parts are below S3's 5 MiB floor, so the real
    # server refuses the completion (EntityTooSmall) and the connector must clean up.
    config = S3Config.model_construct(
        **(
            s3_config(s3_bucket).model_dump()
            | {"multipart_threshold": 1, "multipart_part_size": 2**20}
        )
    )
    connector = S3Connector(config, SECRETS)
    with pytest.raises(ConnectorError) as caught:
        run(connector.write_batch(batch_key("acme", "web", T0), big_table(4_000)))
    assert not caught.value.retryable
    assert "EntityTooSmall" in caught.value.detail
    assert isinstance(caught.value.__cause__, ClientError)
    assert s3_bucket.keys() == []
    uploads = s3_bucket.server.admin("s3").list_multipart_uploads(Bucket=s3_bucket.name)
    assert not uploads.get("Uploads")


# -- listing and retention at scale ------------------------------------------------------------


def test_listing_pages_and_deletes_in_batches(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of 2 and delete batches of 2 walk the same loops as 1000 would, without 1001 PUTs.
    monkeypatch.setattr(s3mod, "_LIST_PAGE", 2)
    monkeypatch.setattr(s3mod, "_DELETE_BATCH", 2)
    admin, day = s3_bucket.server.admin("s3"), "logs/org=acme/source=web/dt=2024-05-01"
    old = [f"{day}/hour=10/b{i}.parquet" for i in range(5)]
    kept = [f"{day}/hour=12/b0.parquet", f"{day}/hour=10/_SUCCESS", f"{day}/hour=10/.x.parquet"]
    for key in old + kept:
        admin.put_object(Bucket=s3_bucket.name, Key=key, Body=b"not read by listing")

    connector = connector_for(s3_bucket)
    relative = sorted(k.removeprefix("logs/") for k in old)
    assert run(connector.list_objects("acme", "web", T0, T0 + H)) == relative
    assert run(connector.delete_expired("acme", None, T0 + H)) == relative
    assert s3_bucket.keys() == sorted(kept)


def test_listing_never_touches_days_outside_the_range(s3_bucket: S3Bucket) -> None:
    connector = connector_for(s3_bucket)
    for day in range(3):
        run(connector.write_batch(batch_key("acme", "web", T0 + day * 24 * H), make_events(1)))
    listed: list[str] = []
    original = connector._keys_under

    async def spy(client: Any, prefix: str) -> list[str]:
        listed.append(prefix)
        return await original(client, prefix)

    connector._keys_under = spy  # type: ignore[method-assign]
    keys = run(connector.list_objects("acme", None, T0 + 24 * H, T0 + 25 * H))
    assert [k.split("/")[2] for k in keys] == ["dt=2024-05-02"]
    assert listed == ["logs/org=acme/source=web/dt=2024-05-02/"]


# -- connection check and error translation ----------------------------------------------------


def test_probe_reports_each_permission_and_cleans_up(s3_bucket: S3Bucket) -> None:
    checks = run(connector_for(s3_bucket).probe())
    assert [c.name for c in checks] == STEPS
    assert all(c.ok for c in checks), checks
    arn = f"arn:aws:s3:::{s3_bucket.name}/logs/.astralog-probe-"
    assert checks[1].detail.startswith(f"s3:PutObject allowed on {arn}")
    assert s3_bucket.keys() == []


def test_missing_bucket_is_named_and_permanent(moto_server: MotoServer) -> None:
    bucket = S3Bucket(name=f"missing-{uuid.uuid4().hex[:8]}", server=moto_server)
    connector = connector_for(bucket)
    checks = run(connector.probe())
    assert [c.ok for c in checks] == [True, False, False, False, False]
    assert f"bucket {bucket.name!r} does not exist" in checks[1].detail
    assert all(c.detail == "not run: step 'write' failed" for c in checks[2:])

    with pytest.raises(ConnectorError) as caught:
        run(connector.write_batch(batch_key("acme", "web", T0), make_events(1)))
    assert not caught.value.retryable and not connector.is_retryable(caught.value)
    assert "does not exist" in caught.value.detail


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_unreachable_endpoint_is_retryable(s3_bucket: S3Bucket) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    connector = connector_for(s3_bucket, endpoint_url=endpoint, max_attempts=1)
    with pytest.raises(ConnectorError) as caught:
        run(connector.write_batch(batch_key("acme", "web", T0), make_events(1)))
    assert caught.value.retryable
    assert f"cannot reach {endpoint}" in caught.value.detail
    assert isinstance(caught.value.__cause__, EndpointConnectionError)
    checks = run(connector.probe())
    assert "cannot reach" in checks[1].detail and checks[4].detail.startswith("not run")


class _Loopback(AbstractResolver):
    """Stands in for the SSRF guard's PinnedResolver: every name resolves to 127.0.0.1."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


def test_the_resolver_decides_where_connections_go(s3_bucket: S3Bucket) -> None:
    # .invalid never resolves in DNS (RFC 6761): only the resolver can make this work.
    endpoint = f"http://localhost.pinned.invalid:{s3_bucket.server.port}"
    config = s3_config(s3_bucket, endpoint_url=endpoint, prefix="", max_attempts=1)
    unpinned = run(S3Connector(config, SECRETS).probe())
    assert "cannot reach" in unpinned[1].detail

    resolver = _Loopback()
    pinned = S3Connector(config, SECRETS, resolver=resolver)
    assert all(c.ok for c in run(pinned.probe()))
    written = run(pinned.write_batch(batch_key("acme", "web", T0), make_events(2)))
    assert s3_bucket.keys() == [written.key]  # no prefix: the key is the object key
    assert set(resolver.asked) == {"localhost.pinned.invalid"}


def _test_dns(host: str, port: int | None, *, type: int = 0) -> Any:
    """The DNS answer the guard checks: the test name is moto's loopback address."""
    assert host == "localhost.pinned.test"
    return socket.getaddrinfo("127.0.0.1", port, socket.AF_INET, type)


def test_the_ssrf_guard_pins_the_client_to_the_checked_address(s3_bucket: S3Bucket) -> None:
    endpoint = f"http://localhost.pinned.test:{s3_bucket.server.port}"
    checked = check_endpoint(
        endpoint, allow_http=True, allow_networks=["127.0.0.0/8"], resolve=_test_dns
    )
    config = s3_config(s3_bucket, endpoint_url=checked.url, max_attempts=1)
    pinned = S3Connector(config, SECRETS, connector_args=pinned_connector_args(checked))
    assert all(c.ok for c in run(pinned.probe()))

    # A virtual-hosted name (<bucket>.localhost.pinned.test) is another host: refused.
    virtual = config.model_copy(update={"addressing_style": "virtual"})
    refused = S3Connector(virtual, SECRETS, connector_args=pinned_connector_args(checked))
    with pytest.raises(ConnectorError) as caught:
        run(refused.write_batch(batch_key("acme", "web", T0), make_events(1)))
    assert "cannot reach" in caught.value.detail and "pinned to" in caught.value.detail
    assert not caught.value.retryable  # a refused target is a configuration problem
    assert s3_bucket.keys() == []


@pytest.fixture
def redirecting_endpoint(s3_bucket: S3Bucket) -> Iterator[str]:
    """An endpoint answering every request with 307 to the same path on the real server."""

    class Redirect(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(307)
            self.send_header("Location", s3_bucket.endpoint_url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = answer

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_silent_endpoint_times_out_instead_of_hanging(
    s3_bucket: S3Bucket, silent_endpoint: str
) -> None:
    # Uploads carry no "Expect: 100-continue": aiohttp would wait for the 100 without a timeout.
    connector = connector_for(
        s3_bucket, endpoint_url=silent_endpoint, max_attempts=1, read_timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(ConnectorError) as caught:
        run(connector.write_batch(batch_key("acme", "web", T0), make_events(1)))
    assert time.monotonic() - started < 10
    assert caught.value.retryable
    assert "did not answer in time" in caught.value.detail


def test_redirects_are_not_followed(s3_bucket: S3Bucket, redirecting_endpoint: str) -> None:
    connector = connector_for(s3_bucket, endpoint_url=redirecting_endpoint, max_attempts=1)
    with pytest.raises(ConnectorError) as caught:
        run(connector.write_batch(batch_key("acme", "web", T0), make_events(1)))
    assert "does not follow redirects" in caught.value.detail
    assert not caught.value.retryable
    assert s3_bucket.keys() == []  # following the Location would have stored it there


# -- credentials and permissions, with moto's IAM switched on ---------------------------------


@pytest.fixture
def iam_bucket(moto_iam_server: MotoServer) -> Iterator[S3Bucket]:
    moto_iam_server.require_auth(False)
    bucket = moto_iam_server.new_bucket()
    yield bucket
    moto_iam_server.require_auth(False)


def moto_policy(config: S3Config, without: str = "") -> dict[str, Any]:
    """least_privilege_policy as moto can evaluate it.

    moto applies a statement's Condition only to sts:ExternalId and treats any other condition
    as a Deny, so the s3:prefix condition on ListBucket is dropped here; actions and resources
    are checked as written. (On AWS the condition narrows listing to the prefix.)
    """
    policy = least_privilege_policy(config)
    for statement in policy["Statement"]:
        statement.pop("Condition", None)
        statement["Action"] = [a for a in statement["Action"] if a != without]
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"]]
    return policy


def iam_user(server: MotoServer, policy: dict[str, Any]) -> tuple[str, S3Secrets]:
    iam, name = server.admin("iam"), f"user-{uuid.uuid4().hex[:10]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(UserName=name, PolicyName="astralog", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    secrets = S3Secrets.from_plain(key["AccessKeyId"], key["SecretAccessKey"])
    return arn, secrets


def test_least_privilege_policy_is_enough(iam_bucket: S3Bucket) -> None:
    config = s3_config(iam_bucket)
    _, secrets = iam_user(iam_bucket.server, moto_policy(config))
    iam_bucket.server.require_auth(True)
    connector = S3Connector(config, secrets)
    assert all(c.ok for c in run(connector.probe()))
    written = run(connector.write_batch(batch_key("acme", "web", T0), make_events(2)))
    assert run(connector.list_objects("acme", None, T0, T0 + H)) == [written.key]


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("s3:PutObject", {"write": "s3:PutObject denied on arn:aws:s3:::{b}/logs/.astralog-probe-",
                          "read": "not run: the canary object was not written"}),
        ("s3:GetObject", {"read": "s3:GetObject denied on arn:aws:s3:::{b}/logs/.astralog-probe-"}),
        ("s3:ListBucket", {"list": "s3:ListBucket denied on arn:aws:s3:::{b} (prefix 'logs/')"}),
        ("s3:DeleteObject",
         {"delete": "s3:DeleteObject denied on arn:aws:s3:::{b}/logs/.astralog-probe-"}),
    ],
)  # fmt: skip
def test_probe_names_exactly_the_missing_permission(
    iam_bucket: S3Bucket, missing: str, expected: dict[str, str]
) -> None:
    config = s3_config(iam_bucket)
    _, secrets = iam_user(iam_bucket.server, moto_policy(config, without=missing))
    iam_bucket.server.require_auth(True)
    checks = {c.name: c for c in run(S3Connector(config, secrets).probe())}
    failed = {name: c.detail for name, c in checks.items() if not c.ok}
    assert failed.keys() == expected.keys(), checks
    for name, prefix in expected.items():
        assert failed[name].startswith(prefix.format(b=iam_bucket.name)), failed[name]


@pytest.mark.parametrize("wrong", ["access_key_id", "secret_access_key"])
def test_wrong_credentials_are_permanent_and_never_echoed(iam_bucket: S3Bucket, wrong: str) -> None:
    config = s3_config(iam_bucket)
    _, good = iam_user(iam_bucket.server, moto_policy(config))
    bad_value = "AKIA" + "Z" * 16 if wrong == "access_key_id" else "not-the-secret-" + "x" * 25
    plain = {name: value.get_secret_value() for name, value in good if value is not None}
    secrets = S3Secrets.model_validate(plain | {wrong: bad_value})
    iam_bucket.server.require_auth(True)
    connector = S3Connector(config, secrets)

    with pytest.raises(ConnectorError) as caught:
        run(connector.write_batch(batch_key("acme", "web", T0), make_events(1)))
    expected = "access key id is not known" if wrong == "access_key_id" else "does not match"
    assert expected in caught.value.detail
    assert not caught.value.retryable
    checks = run(connector.probe())
    assert [c.ok for c in checks] == [True, False, False, False, False]
    texts = [caught.value.detail, repr(connector), repr(secrets), *(c.detail for c in checks)]
    for secret in secrets.revealed():
        assert all(secret not in text for text in texts)


def test_assume_role_with_the_external_id_astralog_generated(
    iam_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = iam_bucket.server
    role_arn = f"arn:aws:iam::{MOTO_ACCOUNT}:role/customer-{uuid.uuid4().hex[:8]}"
    config = s3_config(
        iam_bucket, credentials="assume_role", role_arn=role_arn, external_id=new_external_id()
    )
    assume = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}  # fmt: skip
    astralog_arn, astralog_keys = iam_user(server, assume)
    iam = server.admin("iam")
    created = iam.create_role(
        RoleName=role_arn.rsplit("/", 1)[1],
        AssumeRolePolicyDocument=json.dumps(trust_policy(config, astralog_arn)),
    )
    assert created["Role"]["Arn"] == role_arn
    iam.put_role_policy(
        RoleName=created["Role"]["RoleName"],
        PolicyName="astralog",
        PolicyDocument=json.dumps(moto_policy(config)),
    )
    _host_credentials(monkeypatch, tmp_path, astralog_keys)
    server.require_auth(True)

    connector = S3Connector(config, sts_endpoint_url=server.endpoint_url)
    checks = run(connector.probe())
    assert all(c.ok for c in checks), checks
    assert checks[0].detail == f"assumed {role_arn} with Astralog's external id"
    written = run(connector.write_batch(batch_key("acme", "web", T0), make_events(2)))
    assert written.rows == 2

    # Another tenant pointing at the same role cannot present this customer's external id.
    other = config.model_copy(update={"external_id": new_external_id()})
    refused = run(S3Connector(other, sts_endpoint_url=server.endpoint_url).probe())
    assert refused[0].detail.startswith(f"sts:AssumeRole denied on {role_arn}")
    assert all(c.detail == "not run: step 'credentials' failed" for c in refused[1:])


def _host_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secrets: S3Secrets) -> None:
    """Make ``secrets`` the host's default-chain credentials, and nothing else."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", secrets.access_key_id.get_secret_value())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets.secret_access_key.get_secret_value())
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# -- classification, policy and configuration (no server) -----------------------------------


def client_error(
    code: str, status: int, operation: str = "PutObject", message: str = "m"
) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("Throttling", 400), True),
        (client_error("TooManyRequests", 429), True),
        (client_error("RequestTimeout", 400), True),
        (client_error("InternalError", 500), True),
        (client_error("ServiceUnavailable", 503), True),
        (client_error("AnythingElse", 502), True),
        (client_error("AccessDenied", 403), False),
        (client_error("NoSuchBucket", 404), False),
        (client_error("InvalidAccessKeyId", 403), False),
        (client_error("SignatureDoesNotMatch", 403), False),
        (client_error("PermanentRedirect", 301), False),
        (EndpointConnectionError(endpoint_url="https://s3.example"), True),
        (ConnectTimeoutError(endpoint_url="https://s3.example"), True),
        (ReadTimeoutError(endpoint_url="https://s3.example"), True),
        (ConnectionClosedError(endpoint_url="https://s3.example"), True),
        (SSLError(endpoint_url="https://s3.example", error="bad certificate"), False),
        (NoCredentialsError(), False),
        (ConnectorError("down", retryable=True), True),
        (TypeError("a bug"), False),
    ],
)
def test_retryable_classification_of_storage_errors(exc: BaseException, retryable: bool) -> None:
    assert is_retryable_error(exc) is retryable


def test_error_messages_redact_known_secret_values() -> None:
    connector = S3Connector(S3Config(bucket="acme-logs"), SECRETS)

    async def fail() -> None:
        async with connector._translated("writing a batch", "logs/x.parquet"):
            raise client_error("OddError", 400, message=f"server echoed {TEST_SECRET}")

    with pytest.raises(ConnectorError) as caught:
        run(fail())
    assert TEST_SECRET not in caught.value.detail
    assert "server echoed <redacted>" in caught.value.detail


def test_least_privilege_policy_scopes_everything_to_the_prefix() -> None:
    key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    config = S3Config(
        bucket="acme-logs", prefix="/astralog/prod/", region="eu-west-1", sse="aws:kms",
        kms_key_id=key,
    )  # fmt: skip
    policy = least_privilege_policy(config)
    json.dumps(policy)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    objects = "arn:aws:s3:::acme-logs/astralog/prod/*"
    assert by_sid["AstralogWriteBatches"]["Action"] == [
        "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"
    ]  # fmt: skip
    assert by_sid["AstralogWriteBatches"]["Resource"] == objects
    assert by_sid["AstralogReadBatches"] | {} == {
        "Sid": "AstralogReadBatches", "Effect": "Allow", "Action": ["s3:GetObject"],
        "Resource": objects,
    }  # fmt: skip
    listing = by_sid["AstralogListPrefix"]
    assert listing["Resource"] == "arn:aws:s3:::acme-logs"
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["astralog/prod", "astralog/prod/*"]}
    }
    assert by_sid["AstralogSseKms"]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert by_sid["AstralogSseKms"]["Resource"] == key
    actions = [a for s in policy["Statement"] for a in s["Action"]]
    assert not any("*" in a for a in actions)

    plain = least_privilege_policy(S3Config(bucket="acme-logs", region="cn-north-1"))
    assert [s["Sid"] for s in plain["Statement"]] == [
        "AstralogWriteBatches", "AstralogReadBatches", "AstralogListPrefix"
    ]  # fmt: skip
    assert plain["Statement"][0]["Resource"] == "arn:aws-cn:s3:::acme-logs/*"
    assert "Condition" not in plain["Statement"][2]


def test_trust_policy_requires_the_external_id() -> None:
    external_id = new_external_id()
    config = S3Config(
        bucket="acme-logs", credentials="assume_role",
        role_arn="arn:aws:iam::111122223333:role/astralog-writer", external_id=external_id,
    )  # fmt: skip
    principal = "arn:aws:iam::999988887777:role/astralog-service"
    (statement,) = trust_policy(config, principal)["Statement"]
    assert statement["Principal"] == {"AWS": principal}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    with pytest.raises(ValueError, match="assume_role"):
        trust_policy(S3Config(bucket="acme-logs"), principal)


def test_external_ids_are_generated_never_chosen() -> None:
    ids = {new_external_id() for _ in range(200)}
    assert len(ids) == 200
    for external_id in ids:
        random_part = external_id.removeprefix("astralog-")
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", random_part)  # 32 x 6 bits = 192 bits
    role = "arn:aws:iam::111122223333:role/astralog-writer"
    with pytest.raises(ValidationError, match="new_external_id"):
        S3Config(bucket="acme-logs", credentials="assume_role", role_arn=role, external_id="mine")


@pytest.mark.parametrize(
    "fields",
    [
        {"bucket": "Not_A_Bucket!"},
        {"bucket": "b", "endpoint_url": "ftp://s3.example"},
        {"bucket": "acme-logs", "endpoint_url": "https://key:secret@s3.example"},
        {"bucket": "acme-logs", "endpoint_url": "https://s3.example/path"},
        {"bucket": "acme-logs", "prefix": "logs/../other"},
        {"bucket": "acme-logs", "sse": "aws:kms"},
        {"bucket": "acme-logs", "kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/x"},
        {"bucket": "acme-logs", "role_arn": "arn:aws:iam::111122223333:role/x"},
        {"bucket": "acme-logs", "multipart_part_size": 2**20},
        {"bucket": "acme-logs", "unknown": 1},
    ],
)
def test_config_refuses_what_cannot_work(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        S3Config(**fields)


def test_config_is_stored_as_json_and_secrets_stay_apart() -> None:
    config = S3Config(
        bucket="acme-logs", endpoint_url="https://acct.r2.cloudflarestorage.com/",
        region="auto", prefix="astralog",
    )  # fmt: skip
    assert config.endpoint_url == "https://acct.r2.cloudflarestorage.com"
    assert S3Config.model_validate_json(config.model_dump_json()) == config
    secrets = S3Secrets.from_plain("AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG")
    connector = S3Connector(config, secrets)
    for text in (repr(secrets), str(secrets), repr(connector), secrets.model_dump_json()):
        assert "wJalrXUtnFEMI" not in text and "AKIAEXAMPLE" not in text
    with pytest.raises(ValueError, match="static"):
        S3Connector(config)
    with pytest.raises(ValueError, match="static"):
        S3Connector(config.model_copy(update={"credentials": "default_chain"}), secrets)


def test_provider_notes_cover_the_supported_stores() -> None:
    assert set(PROVIDER_NOTES) == {"aws", "r2", "gcs", "minio"}
    assert "r2.cloudflarestorage.com" in PROVIDER_NOTES["r2"]["endpoint_url"]
    assert PROVIDER_NOTES["r2"]["region"] == "auto"
    assert PROVIDER_NOTES["gcs"]["endpoint_url"] == "https://storage.googleapis.com"
    assert PROVIDER_NOTES["gcs"]["addressing_style"] == PROVIDER_NOTES["minio"]["addressing_style"]
    assert json.loads(json.dumps(PROVIDER_NOTES)) == PROVIDER_NOTES
    for notes in PROVIDER_NOTES.values():
        style = notes["addressing_style"].split()[0]
        S3Config.model_validate({"bucket": "acme-logs", "addressing_style": style})
