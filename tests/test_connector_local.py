"""The local-directory connector: the shared contract plus what only a filesystem can show."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from astralog.connectors.base import BatchKey, ConnectorError
from astralog.connectors.layout import object_key, partition_hour
from astralog.connectors.local import LocalConnector
from astralog.connectors.parquet import to_parquet_bytes
from tests.connector_contract import T0, ConnectorContract, batch_key, make_events, run


class TestLocalConnector(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> LocalConnector:
        return LocalConnector(tmp_path / "bucket", row_group_rows=1024)

    def stored_rows(self, connector: LocalConnector, key: str) -> int:  # type: ignore[override]
        return pq.read_table(connector.root / key).num_rows


def test_object_key_is_hive_layout() -> None:
    key = batch_key("acme", "web", T0, "b-1")
    assert object_key(key) == "org=acme/source=web/dt=2024-05-01/hour=10/b-1.parquet"
    assert object_key(key, prefix="/logs/") == (
        "logs/org=acme/source=web/dt=2024-05-01/hour=10/b-1.parquet"
    )
    assert partition_hour(object_key(key, prefix="logs")) == T0


@pytest.mark.parametrize("org", ["../etc", "a/b", "", ".hidden"])
def test_unsafe_ids_are_refused(org: str) -> None:
    with pytest.raises(ValueError, match="not usable"):
        BatchKey(org_id=org, source_id="web", hour=T0, batch_id="b")


def test_parquet_is_time_sorted_zstd_with_statistics() -> None:
    data = to_parquet_bytes(make_events(3000, reverse=True), row_group_rows=1024)
    parquet = pq.ParquetFile(io.BytesIO(data))
    meta = parquet.metadata
    assert meta.num_row_groups == 3
    column = meta.row_group(0).column(parquet.schema_arrow.get_field_index("Timestamp"))
    assert column.compression == "ZSTD"
    assert column.statistics is not None and column.statistics.has_min_max
    stamps = parquet.read().column("Timestamp").to_pylist()
    assert stamps == sorted(stamps)


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    connector = LocalConnector(tmp_path)
    written = run(connector.write_batch(batch_key("acme", "web", T0), make_events(3)))
    partition = (tmp_path / written.key).parent
    assert [p.name for p in partition.iterdir()] == [Path(written.key).name]


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    connector = LocalConnector(tmp_path)
    key = batch_key("acme", "web", T0)
    with pytest.raises((TypeError, AttributeError)):
        run(connector.write_batch(key, "not a table"))  # type: ignore[arg-type]
    partition = tmp_path / object_key(key)
    assert not partition.exists()
    assert list(partition.parent.iterdir()) == []


def test_probe_creates_a_missing_root(tmp_path: Path) -> None:
    connector = LocalConnector(tmp_path / "not" / "yet")
    assert all(c.ok for c in run(connector.probe()))
    assert (tmp_path / "not" / "yet").is_dir()
    assert list((tmp_path / "not" / "yet").iterdir()) == []  # the canary is gone


def test_probe_names_the_failing_step(tmp_path: Path) -> None:
    # Tests run as root, and chmod 0o500 does not stop root from writing; a root path that is a
    # regular file fails for every user, so that is the unwritable destination here.
    root = tmp_path / "bucket"
    root.write_text("not a directory")
    checks = run(LocalConnector(root).probe())
    assert [c.name for c in checks] == ["directory", "write", "read", "list", "delete"]
    assert not checks[0].ok
    assert "not a directory" in checks[0].detail
    assert all(not c.ok and "'directory' failed" in c.detail for c in checks[1:])


def test_write_errors_become_connector_errors(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.write_text("not a directory")
    with pytest.raises(ConnectorError) as caught:
        run(LocalConnector(root).write_batch(batch_key("acme", "web", T0), make_events(1)))
    assert isinstance(caught.value.__cause__, OSError)
    assert str(root) in caught.value.detail


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EACCES, "Permission denied"), True),
        (OSError(errno.EROFS, "Read-only file system"), True),
        (OSError(errno.ENAMETOOLONG, "File name too long"), False),
        (TypeError("bug"), False),
        (ConnectorError("down", retryable=True), True),
    ],
)
def test_os_errors_a_person_can_fix_are_retryable(exc: BaseException, retryable: bool) -> None:
    assert LocalConnector(Path("/nonexistent")).is_retryable(exc) is retryable
