"""Persistent settings (config.toml) and the systemd user service, without touching ~/."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lmserve import config, service
from lmserve.commands import config_cmd, service_cmd
from lmserve.config import Config, ServerSettings

# looked up before the fixture below narrows PATH
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every path lmserve or systemd might use points into tmp_path."""
    home = tmp_path / "lmserve-home"
    monkeypatch.setenv("LMSERVE_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.delenv(config.MODELS_DIR_ENV, raising=False)
    # only tools the test puts here are found: never the machine's real systemctl
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return home


# --- config ----------------------------------------------------------------------------

def test_defaults_when_there_is_no_file(isolated: Path) -> None:
    cfg = config.load_config()
    assert cfg == Config()
    assert cfg.to_dict() == {
        "server": {"port": 1234, "host": "127.0.0.1", "cors": True, "context_length": 4096,
                   "parallel": 4, "max_queue": 64, "prefill_budget": 64, "threads": 0,
                   "share_cpu": True, "log_format": "text", "log_prompts": False,
                   "keepalive_seconds": 2},
        "models": {"dir": str(isolated / "models"), "jit": True, "ttl_seconds": 3600,
                   "max_loaded": 0, "memory_budget_mb": 0, "default": ""},
        "security": {"allowed_hosts": "", "allowed_origins": ""},
        "limits": {"max_body_mb": 32, "max_messages": 4096, "max_n": 16, "max_tokens": 131072,
                   "max_stop": 32, "max_tools": 256},
        "app": {"port": 1235, "start_server": True},
        "mcp": {"allow_ephemeral": False, "max_tool_rounds": 8, "tool_timeout_seconds": 60},
    }
    assert config.config_file() == isolated / "config.toml"
    assert not config.config_file().exists()  # reading never creates the file


def test_models_dir_default_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.MODELS_DIR_ENV, str(tmp_path / "gguf"))
    assert config.load_config().models.dir == tmp_path / "gguf"


@pytest.mark.parametrize(("key", "raw", "expected"), [
    ("server.port", "8080", 8080),
    ("server.port", "0", 0),
    ("server.host", "0.0.0.0", "0.0.0.0"),
    ("server.cors", "false", False),
    ("server.cors", "Yes", True),
    ("server.context_length", "8192", 8192),
    ("server.parallel", "1", 1),
    ("server.max_queue", "0", 0),
    ("server.threads", "2", 2),
    ("server.share_cpu", "off", False),
    ("models.jit", "off", False),
    ("models.ttl_seconds", "0", 0),
    ("models.max_loaded", "3", 3),
    ("models.memory_budget_mb", "2048", 2048),
    ("models.default", "google/gemma-3-270m", "google/gemma-3-270m"),
])
def test_set_value_parses_saves_and_reloads(key: str, raw: str, expected: object) -> None:
    cfg = config.set_value(key, raw)
    assert cfg.get(key) == expected
    assert type(cfg.get(key)) is type(expected)
    assert config.load_config() == cfg
    section, name = key.split(".")
    on_disk = tomllib.loads(config.config_file().read_text())
    default = Config().get(key)
    # only values that differ from the default are written
    assert on_disk.get(section, {}).get(name, default) == expected


def test_set_models_dir_is_stored_absolute(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config.set_value("models.dir", "my models")
    assert cfg.models.dir == tmp_path / "my models"
    assert tomllib.loads(config.config_file().read_text())["models"]["dir"] == str(
        tmp_path / "my models")
    # a pinned dir no longer follows the environment
    monkeypatch.setenv(config.MODELS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert config.load_config().models.dir == tmp_path / "my models"


def test_set_values_accumulate() -> None:
    config.set_value("server.port", "8080")
    config.set_value("models.jit", "false")
    cfg = config.load_config()
    assert (cfg.server.port, cfg.models.jit, cfg.server.parallel) == (8080, False, 4)


@pytest.mark.parametrize(("key", "raw"), [
    ("server.port", "abc"),
    ("server.port", "70000"),
    ("server.port", "-1"),
    ("server.port", "80.5"),
    ("server.parallel", "0"),
    ("server.context_length", "0"),
    ("server.max_queue", "-3"),
    ("server.threads", "-1"),
    ("server.cors", "maybe"),
    ("server.host", ""),
    ("server.host", "local host"),
    ("models.ttl_seconds", "1.5"),
    ("models.max_loaded", "-1"),
    ("models.dir", "  "),
    ("server.nope", "1"),
    ("nope.port", "1"),
    ("port", "1"),
])
def test_set_value_rejects_bad_values_naming_the_key(key: str, raw: str) -> None:
    config.set_value("server.parallel", "2")
    before = config.config_file().read_text()
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config.set_value(key, raw)
    assert config.config_file().read_text() == before


@pytest.mark.parametrize(("toml_text", "key"), [
    ('[server]\nport = "8080"\n', "server.port"),
    ("[server]\nport = true\n", "server.port"),  # bool must not pass as int
    ("[server]\nport = 99999\n", "server.port"),
    ("[server]\ncors = 1\n", "server.cors"),
    ("[server]\ncontext_length = 4096.0\n", "server.context_length"),
    ("[server]\nhost = 127\n", "server.host"),
    ("[models]\ndir = 5\n", "models.dir"),
    ("[models]\nttl_seconds = -1\n", "models.ttl_seconds"),
    ("server = 3\n", "server"),
])
def test_wrong_types_in_the_file_name_key_and_file(toml_text: str, key: str) -> None:
    path = config.config_file()
    path.write_text(toml_text)
    with pytest.raises(ValueError) as err:
        config.load_config()
    assert key in str(err.value)
    assert str(path) in str(err.value)


def test_invalid_toml_names_the_file() -> None:
    path = config.config_file()
    path.write_text("[server\nport = 1\n")
    with pytest.raises(ValueError, match="not valid TOML") as err:
        config.load_config()
    assert str(path) in str(err.value)


def test_unknown_keys_are_ignored_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    config.config_file().write_text(
        "top = 1\n\n[server]\nport = 4321\nturbo = true\n\n[gpu]\nlayers = 10\n")
    cfg = config.load_config()
    assert cfg.server.port == 4321
    err = capsys.readouterr().err
    assert "server.turbo" in err and "'gpu'" in err and "'top'" in err
    assert "warning" in err


def test_relative_models_dir_in_file_is_relative_to_the_file(isolated: Path) -> None:
    config.config_file().write_text('[models]\ndir = "gguf"\n')
    assert config.load_config().models.dir == isolated / "gguf"


def test_lmserve_config_env_is_honored(isolated: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    custom = tmp_path / "etc" / "lmserve.toml"
    monkeypatch.setenv(config.CONFIG_ENV, str(custom))
    assert config.config_file() == custom
    config.set_value("server.port", "9000")
    assert tomllib.loads(custom.read_text()) == {"server": {"port": 9000}}
    assert not (isolated / "config.toml").exists()
    assert config.load_config().server.port == 9000
    monkeypatch.delenv(config.CONFIG_ENV)
    assert config.load_config().server.port == 1234


def test_written_toml_is_read_back_by_tomllib(tmp_path: Path) -> None:
    tricky = tmp_path / 'dir with "quotes", \\back\\slashes, tabs\tand ünïcödé'
    cfg = Config(server=config.ServerConfig(host="::1", port=1, cors=False, parallel=16),
                 models=config.ModelsConfig(dir=tricky, jit=False, memory_budget_mb=512))
    path = config.save_config(cfg)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data == {
        "server": {"host": "::1", "port": 1, "cors": False, "parallel": 16},
        "models": {"dir": str(tricky), "jit": False, "memory_budget_mb": 512},
    }
    assert config.load_config() == cfg


def test_toml_writer_escapes_control_characters_and_keys() -> None:
    tables = {"a table": {"x": "line\nbreak\x01\x7f", "weird key": 1, "ok_key-1": True}}
    text = config.dumps_toml(tables)
    assert tomllib.loads(text) == tables
    assert config.dumps_toml({"empty": {}}) == ""


def test_settings_from_config_applies_flags_on_top() -> None:
    cfg = config.set_value("server.port", "8080")
    cfg = config.set_value("server.cors", "false")
    settings = config.settings_from_config(cfg)
    assert settings == ServerSettings(port=8080, cors=False)
    flagged = config.settings_from_config(cfg, port=9000, host=None, cors=True,
                                          model="m.gguf", threads=None, parallel=2)
    assert flagged == ServerSettings(port=9000, cors=True, model="m.gguf", parallel=2)
    with pytest.raises(TypeError):
        config.settings_from_config(cfg, no_such_flag=1)


def _config_app() -> typer.Typer:
    app = typer.Typer()
    app.command("show")(config_cmd.config_show)
    app.command("set")(config_cmd.config_set)
    app.command("path")(config_cmd.config_path)
    return app


def test_config_commands(isolated: Path) -> None:
    runner, app = CliRunner(), _config_app()
    shown = runner.invoke(app, ["show"])
    assert shown.exit_code == 0, shown.output
    assert str(isolated / "config.toml") in shown.output
    assert "server.port = 1234" in shown.output and "models.jit = true" in shown.output

    done = runner.invoke(app, ["set", "server.port", "8081"])
    assert done.exit_code == 0, done.output
    assert "server.port = 8081" in done.output

    bad = runner.invoke(app, ["set", "server.parallel", "zero"])
    assert bad.exit_code == 1 and "server.parallel" in bad.output

    as_json = json.loads(runner.invoke(app, ["show", "--json"]).output)
    assert as_json["path"] == str(isolated / "config.toml") and as_json["exists"] is True
    assert as_json["settings"]["server"]["port"] == 8081

    assert runner.invoke(app, ["path"]).output.strip() == str(isolated / "config.toml")

    config.config_file().write_text("[server]\nport = 'x'\n")
    broken = runner.invoke(app, ["show"])
    assert broken.exit_code == 1 and "server.port" in broken.output


# --- service ---------------------------------------------------------------------------

def _unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_unit_text_runs_server_start_with_this_interpreter(tmp_path: Path) -> None:
    env = {"LMSERVE_HOME": str(tmp_path / "home dir"), "LMSERVE_CONFIG": "/etc/lm%s.toml"}
    text = service.unit_text(service.default_exe(), env)

    [exec_start] = _unit_values(text, "ExecStart")
    argv = shlex.split(exec_start)
    assert os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK)
    assert argv[0] == os.path.abspath(sys.executable)
    assert argv[1:] == ["-m", "lmserve", "server", "start"]
    assert "server start" in exec_start

    assert "WantedBy=default.target" in text.splitlines()
    assert _unit_values(text, "Restart") == ["on-failure"]
    assert _unit_values(text, "RestartSec")
    assert _unit_values(text, "Type")[0] in ("simple", "exec")
    assert _unit_values(text, "Description") and _unit_values(text, "Documentation")
    assert _unit_values(text, "Environment") == [
        '"LMSERVE_CONFIG=/etc/lm%%s.toml"',  # % is a systemd specifier: doubled
        f'"LMSERVE_HOME={tmp_path}/home dir"',
    ]
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text.splitlines()


def test_unit_text_without_env_has_no_environment_lines() -> None:
    assert "Environment=" not in service.unit_text(service.default_exe(), {})


def test_exec_line_quotes_for_systemd() -> None:
    assert service.exec_line(["/usr/bin/python3", "-m", "lmserve"]) == "/usr/bin/python3 -m lmserve"
    line = service.exec_line(['/opt/my env/bin/py', "100%", "$HOME", 'say "hi"', "a\\b", ""])
    assert line == ('"/opt/my env/bin/py" 100%% $$HOME "say \\"hi\\"" "a\\\\b" ""')
    with pytest.raises(ValueError, match="absolute"):
        service.exec_line(["python", "-m", "lmserve"])
    with pytest.raises(ValueError, match="control"):
        service.exec_line(["/bin/x", "two\nlines"])


def test_service_env_forwards_set_variables_as_absolute_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.CONFIG_ENV, "conf/lmserve.toml")
    env = service.service_env()
    assert env == {"LMSERVE_HOME": str(tmp_path / "lmserve-home"),
                   "LMSERVE_CONFIG": str(tmp_path / "conf" / "lmserve.toml")}


def test_unit_path_honors_xdg_config_home(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.unit_path() == tmp_path / "xdg" / "systemd" / "user" / "lmserve.service"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert service.unit_path() == tmp_path / "user" / ".config/systemd/user/lmserve.service"


def test_install_and_uninstall_without_systemd(tmp_path: Path) -> None:
    messages: list[str] = []
    path = service.install(enable=True, start=True, echo=messages.append)
    assert path == tmp_path / "xdg" / "systemd" / "user" / "lmserve.service"
    assert path.read_text() == service.unit_text(service.default_exe(), service.service_env())
    said = "\n".join(messages)
    assert "systemctl --user daemon-reload" in said
    assert "systemctl --user enable --now lmserve.service" in said

    info = service.status()
    assert (info.installed, info.systemd, info.enabled, info.active) == (True, False, None, None)

    assert service.uninstall(echo=messages.append) is True
    assert not path.exists()
    assert service.uninstall() is False
    assert service.status().installed is False


def _fake_systemctl(bin_dir: Path, fail_on: str = "") -> Path:
    """A systemctl that logs its arguments and answers like a working user manager."""
    log = bin_dir / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(f"""#!/bin/sh
echo "$*" >> '{log}'
[ "$2" = '{fail_on}' ] && {{ echo "Failed to $2: boom" >&2; exit 1; }}
case "$2" in
  is-enabled) echo enabled ;;
  is-active) echo active ;;
esac
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def test_install_with_systemd_reloads_enables_and_starts(tmp_path: Path) -> None:
    log = _fake_systemctl(tmp_path / "bin")
    path = service.install(enable=True, start=True)
    assert path.exists()
    calls = log.read_text().splitlines()
    assert calls == ["--user show-environment", "--user daemon-reload",
                     "--user enable lmserve.service", "--user restart lmserve.service"]

    info = service.status()
    assert (info.installed, info.systemd, info.enabled, info.active) == (
        True, True, "enabled", "active")

    log.write_text("")
    assert service.uninstall() is True
    assert not path.exists()
    assert "--user disable --now lmserve.service" in log.read_text().splitlines()
    assert log.read_text().splitlines()[-1] == "--user daemon-reload"


def test_install_without_start_does_not_start(tmp_path: Path) -> None:
    log = _fake_systemctl(tmp_path / "bin")
    service.install()
    assert not any("restart" in call or " start" in call
                   for call in log.read_text().splitlines())


def test_install_reports_a_refusing_systemctl(tmp_path: Path) -> None:
    _fake_systemctl(tmp_path / "bin", fail_on="enable")
    with pytest.raises(service.ServiceError, match="boom"):
        service.install()
    assert service.unit_path().exists()  # the file is written before systemd is asked


def test_no_user_bus_counts_as_no_systemd(tmp_path: Path) -> None:
    _fake_systemctl(tmp_path / "bin", fail_on="show-environment")
    assert service.systemd_available() is False
    assert service.install().exists()


def _service_app() -> typer.Typer:
    app = typer.Typer()
    app.command("install")(service_cmd.service_install)
    app.command("uninstall")(service_cmd.service_uninstall)
    app.command("status")(service_cmd.service_status)
    return app


def test_service_commands_without_systemd() -> None:
    runner, app = CliRunner(), _service_app()
    assert runner.invoke(app, ["status"]).exit_code == 1
    installed = runner.invoke(app, ["install", "--start"])
    assert installed.exit_code == 0, installed.output
    assert "Wrote" in installed.output and "enable --now" in installed.output
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0 and str(service.unit_path()) in status.output
    removed = runner.invoke(app, ["uninstall"])
    assert removed.exit_code == 0 and "Removed" in removed.output
    assert not service.unit_path().exists()


def _verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    # a user-mode manager needs a runtime dir, even just to load units for checking
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--user", str(unit)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="`systemd-analyze` not found (apt-get install systemd)")
def test_systemd_analyze_verifies_the_installed_unit(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "odd 100% $dir" / "config.toml"))
    path = service.install()
    result = _verify(path, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown" not in output and "ignoring" not in output.lower(), output

    # the check has teeth: a unit whose program is missing is rejected
    broken = tmp_path / "broken" / "lmserve.service"
    broken.parent.mkdir()
    broken.write_text(path.read_text().replace(os.path.abspath(sys.executable),
                                               str(tmp_path / "no-such-python")))
    assert _verify(broken, tmp_path).returncode != 0
