from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from astralog.cli import main
from astralog.errors import ConfigError
from astralog.settings import Settings, load_settings


def test_defaults_work_on_a_laptop() -> None:
    settings = load_settings()
    assert settings.mode == "development"
    assert settings.server.url() == "http://127.0.0.1:8080"


def test_production_refuses_the_default_pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRALOG_MODE", "production")
    with pytest.raises(ConfigError, match="ASTRALOG_AUTH__KEY_PEPPER"):
        load_settings()
    monkeypatch.setenv("ASTRALOG_AUTH__KEY_PEPPER", "x" * 40)
    with pytest.raises(ConfigError, match="ASTRALOG_STORAGE__MASTER_KEYS"):
        load_settings()
    monkeypatch.setenv("ASTRALOG_STORAGE__MASTER_KEYS", '{"k1": "' + "A" * 43 + '="}')
    monkeypatch.setenv("ASTRALOG_STORAGE__ACTIVE_MASTER_KEY", "k1")
    assert load_settings().mode == "production"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ASTRALOG_SERVER__PORT", "99999"),
        ("ASTRALOG_INGEST__MAX_BODY_BYTES", "lots"),
        ("ASTRALOG_MODE", "prod"),
        ("ASTRALOG_WAL__FSYNC", "maybe"),
    ],
)
def test_misconfiguration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()
    assert main(["orgs", "list"]) == 2
    assert name in capsys.readouterr().err


def test_config_file_is_read_and_env_wins(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "astralog.toml"
    config.write_text('log_level = "DEBUG"\n[server]\nport = 9000\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("ASTRALOG_CONFIG_FILE", str(config))
    monkeypatch.setenv("ASTRALOG_SERVER__PORT", "9100")
    settings = load_settings()
    assert (settings.log_level, settings.server.host, settings.server.port) == (
        "DEBUG",
        "0.0.0.0",
        9100,
    )


def test_config_reference_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "docs"]) == 0
    text = capsys.readouterr().out
    for name in (
        "ASTRALOG_DATA_DIR",
        "ASTRALOG_WAL__DISK_BUDGET_BYTES",
        "ASTRALOG_AUTH__KEY_PEPPER",
    ):
        assert f"`{name}`" in text


def test_every_path_is_absolute_against_the_directory_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASTRALOG_DATA_DIR", "state/../data")
    monkeypatch.setenv("ASTRALOG_WAL__DIRECTORY", "../wal-disk")
    monkeypatch.setenv("ASTRALOG_CONTROL__DATABASE", "/srv/control.sqlite3")
    settings = load_settings()
    monkeypatch.chdir("/")  # a later chdir changes nothing
    data = tmp_path / "data"
    assert settings.data_dir == data
    assert settings.wal.directory == tmp_path / "wal-disk"
    assert settings.control.database == Path("/srv/control.sqlite3")
    assert settings.control.signing_key_file == data / "checkpoint-signing.key"
    assert settings.storage.local_root == data / "bucket"
    assert settings.path(Path("sessions.sqlite3")) == data / "sessions.sqlite3"
    assert all(p.is_absolute() for p in _path_settings(settings)), list(_path_settings(settings))


def test_the_default_data_dir_is_the_working_directory_s_astralog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASTRALOG_DATA_DIR", raising=False)
    settings = load_settings()
    assert settings.data_dir == tmp_path / ".astralog"
    assert settings.storage.local_root == tmp_path / ".astralog" / "bucket"


def _path_settings(settings: Settings) -> Iterator[Path]:
    """Every path-typed value, wherever it sits, so a path field added later is covered too."""
    for _, value in settings:
        if isinstance(value, Path):
            yield value
        elif isinstance(value, BaseModel):
            yield from (v for _, v in value if isinstance(v, Path))
