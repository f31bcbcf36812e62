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


def test_a_missing_config_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent.toml"
    monkeypatch.setenv("ASTRALOG_CONFIG_FILE", str(missing))
    with pytest.raises(ConfigError, match=f"ASTRALOG_CONFIG_FILE.*{missing}"):
        load_settings()
    assert main(["orgs", "list"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_a_config_file_syntax_error_names_the_file_and_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "astralog.toml"
    config.write_text('[server]\nport = 8085\nhost = "0.0.0.0\n')
    monkeypatch.setenv("ASTRALOG_CONFIG_FILE", str(config))
    assert main(["orgs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: invalid configuration file {config}: "), err
    assert "line 3" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "unknown", "suggestion"),
    [
        ("[server]\nprot = 8085\n", "server.prot", "server.port"),
        ("log_levle = 'DEBUG'\n", "log_levle", "log_level"),
        ("[ingset]\nmax_fields = 5\n", "ingset", "ingest"),
    ],
)
def test_an_unknown_key_in_the_config_file_is_refused_with_the_close_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, unknown: str, suggestion: str
) -> None:
    config = tmp_path / "astralog.toml"
    config.write_text(text)
    monkeypatch.setenv("ASTRALOG_CONFIG_FILE", str(config))
    with pytest.raises(ConfigError, match=f"{unknown}.*{config}.*did you mean {suggestion}"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("ASTRALOG_INGEST__MAX_FIELDZ", "ASTRALOG_INGEST__MAX_FIELDS"),
        ("ASTRALOG_DATADIR", "ASTRALOG_DATA_DIR"),
        ("ASTRALOG_SERVR__PORT", "ASTRALOG_SERVER__PORT"),
    ],
)
def test_an_unknown_environment_variable_is_refused_with_the_close_match(
    monkeypatch: pytest.MonkeyPatch, name: str, suggestion: str
) -> None:
    monkeypatch.setenv(name, "5")
    with pytest.raises(ConfigError, match=f"unknown setting {name}.*did you mean {suggestion}"):
        load_settings()


def test_variables_that_are_not_settings_but_documented_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "astralog.toml"
    config.write_text("[storage]\nmaster_keys = {k1 = '" + "A" * 43 + "='}\n")
    monkeypatch.setenv("ASTRALOG_CONFIG_FILE", str(config))
    monkeypatch.setenv("ASTRALOG_INGEST_KEY", "alk_the_shipper_s_key")  # README and UI snippets
    monkeypatch.setenv("ASTRALOG_STORAGE__ACTIVE_MASTER_KEY", "k1")
    monkeypatch.setenv("ASTRALOG_STORAGE__MASTER_KEYS__K2", "B" * 43 + "=")
    assert load_settings().storage.active_master_key == "k1"
