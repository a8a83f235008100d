"""Start the server at login: a systemd user unit that runs `lmserve server start`.

The unit runs the server in the foreground and lets it read its settings from the config
file, so `lmserve config set` followed by a service restart is how settings change.
Where systemd has no user manager (containers, CI), the unit file is still written and the
commands to run by hand are reported instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmserve import config

UNIT_NAME = "lmserve.service"

# settings that decide where the server finds its files: the service must see the same ones
FORWARDED_ENV = ("LMSERVE_HOME", config.CONFIG_ENV, config.MODELS_DIR_ENV)

Echo = Callable[[str], None]


class ServiceError(RuntimeError):
    """systemctl is available but refused a step."""


def default_exe() -> list[str]:
    """The command that runs this lmserve: this interpreter with `-m lmserve`."""
    # not resolved: a venv's python is a symlink, and following it would lose the venv
    return [os.path.abspath(sys.executable), "-m", "lmserve"]


def service_env() -> dict[str, str]:
    """The LMSERVE_* variables set now, as absolute paths (the service has another cwd)."""
    env = {}
    for name in FORWARDED_ENV:
        value = os.environ.get(name)
        if value:
            env[name] = os.path.abspath(os.path.expanduser(value))
    return env


def unit_dir() -> Path:
    """~/.config/systemd/user, honoring $XDG_CONFIG_HOME."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    # the XDG spec says relative values are invalid and must be ignored
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "systemd" / "user"


def unit_path() -> Path:
    return unit_dir() / UNIT_NAME


# --- unit file text --------------------------------------------------------------------

def _escape_specifiers(text: str) -> str:
    # systemd expands %h, %u, ... in most settings; a literal % is written %%
    return text.replace("%", "%%")


def _check_one_line(text: str) -> None:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError(f"control characters cannot be written to a unit file: {text!r}")


def _quote_word(word: str) -> str:
    """A word for a systemd command line: specifiers and $ escaped, quoted when needed."""
    _check_one_line(word)
    # $VAR and ${VAR} would be expanded from the environment; $$ is a literal $
    word = _escape_specifiers(word).replace("$", "$$")
    if word and not any(ch in word for ch in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: list[str]) -> str:
    """argv as the value of ExecStart=; the program must be an absolute path."""
    if not argv or not os.path.isabs(argv[0]):
        raise ValueError(f"ExecStart needs an absolute program path, got {argv[:1]!r}")
    return " ".join(_quote_word(word) for word in argv)


def _environment_line(name: str, value: str) -> str:
    _check_one_line(name + value)
    if not name or not (name[0].isalpha() or name[0] == "_") or not all(
            ch.isalnum() or ch == "_" for ch in name):
        raise ValueError(f"not a valid environment variable name: {name!r}")
    assignment = _escape_specifiers(f"{name}={value}")
    return 'Environment="' + assignment.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _documentation() -> str:
    # the unit's behavior is set by the config file, so that is where its docs point
    return _escape_specifiers(config.config_file().absolute().as_uri())


def unit_text(exe: list[str], env: dict[str, str]) -> str:
    """The lmserve.service user unit: `<exe> server start` in the foreground."""
    lines = [
        "[Unit]",
        "Description=lmserve local LLM server (OpenAI-compatible API)",
        f"Documentation={_documentation()}",
        # a server that cannot start (port taken, bad config) must not restart forever
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_line([*exe, 'server', 'start'])}",
        *(_environment_line(name, value) for name, value in sorted(env.items())),
        # `lmserve server stop` sends SIGTERM and the server exits 0: not restarted
        "Restart=on-failure",
        "RestartSec=5",
        "TimeoutStopSec=30",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


# --- systemctl ---------------------------------------------------------------------------

def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def systemd_available() -> bool:
    """Whether `systemctl --user` has a user manager to talk to."""
    if shutil.which("systemctl") is None:
        return False
    try:
        # fails fast with "Failed to connect to bus" where there is no user session
        return _systemctl("show-environment").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _run_step(*args: str) -> None:
    result = _systemctl(*args)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise ServiceError(f"`systemctl --user {' '.join(args)}` failed: {detail}")


def _manual_steps(enable: bool, start: bool) -> list[str]:
    steps = ["systemctl --user daemon-reload"]
    if enable and start:
        steps.append(f"systemctl --user enable --now {UNIT_NAME}")
    elif enable:
        steps.append(f"systemctl --user enable {UNIT_NAME}")
    elif start:
        steps.append(f"systemctl --user start {UNIT_NAME}")
    return steps


def _write_unit(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _ignore(_message: str) -> None:
    pass


def install(enable: bool = True, start: bool = False, *, echo: Echo = _ignore) -> Path:
    """Write the unit file, then reload, enable and (if asked) start it when systemd can.

    Returns the unit file's path. Without a usable `systemctl --user` the file is still
    written and echo is told the commands to run by hand. Raises ServiceError only when
    systemctl is usable and refuses a step.
    """
    path = unit_path()
    _write_unit(path, unit_text(default_exe(), service_env()))
    echo(f"Wrote {path}")
    if not systemd_available():
        echo("systemd's user manager is not available here (no `systemctl --user`), so "
             "nothing was enabled. Where it is, run:")
        for step in _manual_steps(enable, start):
            echo(f"  {step}")
        return path
    _run_step("daemon-reload")
    if enable:
        _run_step("enable", UNIT_NAME)
        echo(f"Enabled {UNIT_NAME}: it starts when you log in.")
    if start:
        # restart, so a reinstall with a new interpreter path takes effect at once
        _run_step("restart", UNIT_NAME)
        echo(f"Started {UNIT_NAME}.")
    echo("To keep it running while you are logged out: loginctl enable-linger $USER")
    return path


def uninstall(*, echo: Echo = _ignore) -> bool:
    """Stop and disable the service where systemd can, and remove the unit file.

    Returns whether a unit file was removed.
    """
    path = unit_path()
    usable = systemd_available()
    if usable:
        # may fail when the unit was never loaded; removing the file is what matters
        result = _systemctl("disable", "--now", UNIT_NAME)
        if result.returncode == 0:
            echo(f"Stopped and disabled {UNIT_NAME}.")
    removed = path.exists()
    if removed:
        path.unlink()
        echo(f"Removed {path}")
    else:
        echo(f"No unit file at {path}")
    if usable:
        _systemctl("daemon-reload")
    elif removed:
        echo("systemd's user manager is not available here; where it is, run:")
        echo(f"  systemctl --user disable --now {UNIT_NAME}")
    return removed


@dataclass(frozen=True)
class ServiceStatus:
    unit_path: Path
    installed: bool  # the unit file exists
    systemd: bool  # `systemctl --user` is usable
    enabled: str | None  # `systemctl --user is-enabled`, e.g. "enabled"; None without systemd
    active: str | None  # `systemctl --user is-active`, e.g. "active"; None without systemd


def _query(verb: str) -> str:
    # is-enabled / is-active print the state and exit non-zero for "disabled", "inactive"...
    result = _systemctl(verb, UNIT_NAME)
    return result.stdout.strip() or "unknown"


def status() -> ServiceStatus:
    path = unit_path()
    usable = systemd_available()
    return ServiceStatus(
        unit_path=path,
        installed=path.exists(),
        systemd=usable,
        enabled=_query("is-enabled") if usable else None,
        active=_query("is-active") if usable else None,
    )
