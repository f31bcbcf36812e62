"""Settings refuse values that would break the service later (an OverflowError in every
compaction pass, a header no browser accepts) or point the batch cache, which deletes files, at
directories that are not its own: startup fails naming the variable and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from astralog.errors import ConfigError
from astralog.settings import load_settings


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("ASTRALOG_COMPACTION__SETTLE_SECONDS", "inf", "finite"),
        ("ASTRALOG_COMPACTION__SETTLE_SECONDS", "nan", "finite"),
        ("ASTRALOG_COMPACTION__SETTLE_SECONDS", "1e300", "less than or equal"),
        ("ASTRALOG_COMPACTION__INTERVAL_SECONDS", "inf", "finite"),
        ("ASTRALOG_COMPACTION__INTERVAL_SECONDS", "1e12", "less than or equal"),
        ("ASTRALOG_FLUSH__INTERVAL_SECONDS", "inf", "finite"),
        ("ASTRALOG_SERVER__BODY_TIMEOUT_SECONDS", "inf", "finite"),
        ("ASTRALOG_SERVER__HSTS_SECONDS", "99999999999999999999", "less than or equal"),
    ],
)
def test_non_finite_and_absurd_values_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as raised:
        load_settings(data_dir=tmp_path)
    assert says in str(raised.value.detail)


@pytest.mark.parametrize("directory", ["/", "/var/lib/astralog/cache", "../../etc", "cache/../.."])
def test_the_batch_cache_directory_stays_inside_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: str
) -> None:
    monkeypatch.setenv("ASTRALOG_QUERY__BATCH_CACHE_DIRECTORY", directory)
    with pytest.raises(ConfigError, match="ASTRALOG_QUERY__BATCH_CACHE_DIRECTORY") as raised:
        load_settings(data_dir=tmp_path)
    assert "relative path inside the data dir" in str(raised.value.detail)


def test_sensible_values_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRALOG_COMPACTION__SETTLE_SECONDS", "600")
    monkeypatch.setenv("ASTRALOG_SERVER__HSTS_SECONDS", "63072000")
    monkeypatch.setenv("ASTRALOG_QUERY__BATCH_CACHE_DIRECTORY", "cache/s3")
    settings = load_settings(data_dir=tmp_path)
    assert settings.compaction.settle_seconds == 600
    assert settings.path(settings.query.batch_cache_directory) == tmp_path / "cache/s3"
