"""Settings and where lmserve keeps its files.

User settings live in `<home_dir()>/config.toml` (or `$LMSERVE_CONFIG`), for example:

    [server]
    port = 8080
    cors = false

    [models]
    dir = "/data/gguf"
    ttl_seconds = 0   # never unload

`lmserve config show` lists every setting with its effective value.

Only values that differ from the defaults are written, so defaults that depend on the
environment (models.dir follows `$LMSERVE_MODELS_DIR`) stay live until a user pins them.
"""

from __future__ import annotations

import os
import sys
import threading
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from lmserve import defaults

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1234

CONFIG_ENV = "LMSERVE_CONFIG"
MODELS_DIR_ENV = "LMSERVE_MODELS_DIR"


def home_dir() -> Path:
    """$LMSERVE_HOME, else the per-user data folder."""
    env = os.environ.get("LMSERVE_HOME")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("lmserve"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_file() -> Path:
    """Written by a running server: its pid and address, for `server status` and `stop`."""
    return home_dir() / "server.json"


def log_file() -> Path:
    path = home_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path / "server.log"


def config_file() -> Path:
    """$LMSERVE_CONFIG, else config.toml in the lmserve home folder."""
    env = os.environ.get(CONFIG_ENV)
    return Path(env).expanduser() if env else home_dir() / "config.toml"


def default_models_dir() -> Path:
    """$LMSERVE_MODELS_DIR, else the models folder in the lmserve home folder."""
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else home_dir() / "models"


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str | None = None  # a GGUF path or model id; None = the bundled model
    context_length: int = defaults.CONTEXT_LENGTH
    parallel: int = defaults.PARALLEL
    max_queue: int = defaults.MAX_QUEUE
    prefill_budget: int = defaults.PREFILL_BUDGET
    cors: bool = True
    threads: int | None = None
    share_cpu: bool = True  # fewer threads while other processes keep the cores busy
    api_key: str | None = None  # one ad-hoc admin key, besides the stored ones
    log_format: str = "text"  # or "json": one JSON object per line
    log_prompts: bool = False  # prompt and output text in the log
    keepalive_seconds: int = 2  # SSE comment after this long without an event; 0 = none


@dataclass(frozen=True)
class ServerConfig:
    """The [server] table."""

    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    cors: bool = True
    context_length: int = defaults.CONTEXT_LENGTH
    parallel: int = defaults.PARALLEL
    max_queue: int = defaults.MAX_QUEUE
    prefill_budget: int = defaults.PREFILL_BUDGET  # prompt tokens per step beside streams
    threads: int = 0  # CPU threads per model; 0 = all cores
    share_cpu: bool = True  # decode with fewer threads while other processes are busy
    log_format: str = "text"
    log_prompts: bool = False
    keepalive_seconds: int = 2  # SSE comment after this long without an event; 0 = none


@dataclass(frozen=True)
class ModelsConfig:
    """The [models] table."""

    dir: Path = field(default_factory=default_models_dir)
    jit: bool = True  # load a model on the first request that names it
    ttl_seconds: int = 3600  # idle time before a JIT-loaded model is unloaded; 0 = never
    max_loaded: int = 0  # 0 = no limit
    memory_budget_mb: int = 0  # 0 = no limit
    default: str = ""  # the model serving names that match no model; "" = the one loaded at start


@dataclass(frozen=True)
class SecurityConfig:
    """The [security] table. Lists are comma-separated."""

    # Host names a network-bound server answers to; empty: the machine's own names and
    # addresses; "*": any. Loopback names are always answered; a loopback-bound server
    # answers to nothing else.
    allowed_hosts: str = ""
    # Browser origins, besides local pages, that may load, unload, download and read logs.
    allowed_origins: str = ""

    def hosts(self) -> list[str]:
        return _comma_list(self.allowed_hosts)

    def origins(self) -> list[str]:
        return _comma_list(self.allowed_origins)


@dataclass(frozen=True)
class LimitsConfig:
    """The [limits] table: past each, a request gets a 4xx (413 for the body)."""

    max_body_mb: int = 32
    max_messages: int = 4096
    max_n: int = 16
    max_tokens: int = 131072
    max_stop: int = 32
    max_tools: int = 256


@dataclass(frozen=True)
class AppConfig:
    """The [app] table: the page `lmserve app` serves on loopback."""

    port: int = 1235  # the app's own port, always on 127.0.0.1
    start_server: bool = True  # open the API listener when the app starts


@dataclass(frozen=True)
class McpConfig:
    """The [mcp] table: MCP servers whose tools the server runs for the model."""

    allow_ephemeral: bool = False  # requests may name MCP servers of their own
    max_tool_rounds: int = 8  # model turns that may call tools before it must answer
    tool_timeout_seconds: int = 60  # per tool call


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class Config:
    """All user settings; `load_config()` reads them from the config file."""

    server: ServerConfig = field(default_factory=ServerConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    app: AppConfig = field(default_factory=AppConfig)
    mcp: McpConfig = field(default_factory=McpConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON/TOML-ready values, keyed by table then setting."""
        return {section: {name: _plain(getattr(getattr(self, section), name))
                          for name in _SECTIONS[section]}
                for section in _SECTIONS}

    def get(self, dotted_key: str) -> Any:
        section, name = _split_key(dotted_key)
        return getattr(getattr(self, section), name)


# table name -> {setting name -> Python type}, taken from the dataclasses above
_SECTION_CLASSES: dict[str, type] = {"server": ServerConfig, "models": ModelsConfig,
                                     "security": SecurityConfig, "limits": LimitsConfig,
                                     "app": AppConfig, "mcp": McpConfig}
_SECTIONS: dict[str, dict[str, type]] = {
    section: {f.name: typing.get_type_hints(cls)[f.name] for f in fields(cls)}
    for section, cls in _SECTION_CLASSES.items()
}

# inclusive bounds for integer settings; None = unbounded
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "server.port": (0, 65535),  # 0 asks the OS for a free port
    "server.context_length": (1, None),
    "server.parallel": (1, None),
    "server.max_queue": (0, None),
    "server.prefill_budget": (1, None),
    "server.threads": (0, None),
    "server.keepalive_seconds": (0, None),
    "models.ttl_seconds": (0, None),
    "models.max_loaded": (0, None),
    "models.memory_budget_mb": (0, None),
    "limits.max_body_mb": (1, None),
    "limits.max_messages": (1, None),
    "limits.max_n": (1, None),
    "limits.max_tokens": (1, None),
    "limits.max_stop": (0, None),
    "limits.max_tools": (0, None),
    "app.port": (0, 65535),
    "mcp.max_tool_rounds": (0, None),
    "mcp.tool_timeout_seconds": (1, None),
}

_MAY_BE_EMPTY = {"models.default", "security.allowed_hosts", "security.allowed_origins"}

_TYPE_NAMES: dict[type, str] = {int: "an integer", bool: "true or false", str: "a string",
                                Path: "a path (string)"}
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def config_keys() -> list[str]:
    """Every setting as a dotted key, e.g. "server.port"."""
    return [f"{section}.{name}" for section, names in _SECTIONS.items() for name in names]


def _split_key(dotted_key: str) -> tuple[str, str]:
    section, _, name = dotted_key.strip().partition(".")
    if name not in _SECTIONS.get(section, {}):
        raise ValueError(f"Unknown setting {dotted_key!r}; known settings: "
                         f"{', '.join(config_keys())}.")
    return section, name


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _check_range(key: str, value: Any) -> str | None:
    """Why value is out of range for key, or None when it is fine."""
    if key in _INT_RANGES:
        low, high = _INT_RANGES[key]
        if value < low or (high is not None and value > high):
            return f"must be {'at least' if high is None else 'between'} {low}" + (
                f" and {high}" if high is not None else "")
    elif isinstance(value, str) and not value.strip() and key not in _MAY_BE_EMPTY:
        return "must not be empty"
    elif key == "server.host" and any(ch.isspace() for ch in value):
        return "must not contain spaces"
    elif key == "server.log_format" and value not in ("text", "json"):
        return "must be text or json"
    return None


def _from_toml(value: Any, kind: type, base: Path) -> Any:
    """A value as tomllib read it, checked against the setting's type."""
    # bool is a subclass of int: `port = true` must not pass as 1
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError
    if kind is bool and not isinstance(value, bool):
        raise TypeError
    if kind in (str, Path) and not isinstance(value, str):
        raise TypeError
    if kind is Path:
        # relative to the config file, so the meaning does not depend on the working dir
        return base / Path(value).expanduser() if value.strip() else value
    return value


def _from_text(raw: str, kind: type) -> Any:
    """A value typed on the command line, converted to the setting's type."""
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise TypeError
    if kind is int:
        try:
            return int(text, 10)
        except ValueError:
            raise TypeError from None
    if kind is Path:
        return Path(text).expanduser().absolute() if text else text
    return text


def _section_values(section: str, table: Any, path: Path) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValueError(f"Invalid config file {path}: [{section}] must be a table.")
    values: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{section}.{name}"
        kind = _SECTIONS[section].get(name)
        if kind is None:
            _warn(f"ignoring unknown setting {key!r} in {path}")
            continue
        try:
            converted = _from_toml(value, kind, path.parent)
        except TypeError:
            raise ValueError(f"Invalid setting {key} in {path}: expected {_TYPE_NAMES[kind]}, "
                             f"got {value!r}.") from None
        problem = _check_range(key, converted)
        if problem:
            raise ValueError(f"Invalid setting {key} in {path}: {problem} (got {value!r}).")
        values[name] = converted
    return values


def _warn(message: str) -> None:
    print(f"lmserve: warning: {message}", file=sys.stderr)


# Arrays of tables that other modules own ([[remote]]: remote/entries.py); kept as they
# are when the settings are saved.
ARRAY_TABLES = ("remote",)


def read_toml(path: Path) -> dict[str, Any]:
    """The config file's TOML data; {} when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"Cannot read config file {path}: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"Config file {path} is not valid TOML: {exc}") from exc


def load_config(path: Path | None = None) -> Config:
    """The settings in the config file, with defaults for what it does not set."""
    path = path or config_file()
    data = read_toml(path)
    sections: dict[str, Any] = {}
    for section, table in data.items():
        if section in ARRAY_TABLES:
            continue
        if section not in _SECTIONS:
            what = "table" if isinstance(table, dict) else "setting"
            _warn(f"ignoring unknown {what} {section!r} in {path}")
            continue
        sections[section] = _SECTION_CLASSES[section](**_section_values(section, table, path))
    return Config(**sections)


def save_config(cfg: Config, path: Path | None = None,
                arrays: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    """Write the settings that differ from the defaults, and the arrays of tables given
    (those not given are kept as the file has them); returns the file written."""
    path = path or config_file()
    current, defaults = cfg.to_dict(), Config().to_dict()
    tables = {section: {name: value for name, value in values.items()
                        if value != defaults[section][name]}
              for section, values in current.items()}
    existing = read_toml(path)
    kept = {name: existing[name] for name in ARRAY_TABLES if name in existing}
    kept.update(arrays or {})
    header = ("# lmserve settings. `lmserve config show` lists every setting and its value;\n"
              "# settings not written here have their default value.\n\n")
    write_atomic(path, header + dumps_toml(tables) + dumps_table_arrays(kept))
    return path


def set_value(dotted_key: str, raw_value: str, path: Path | None = None) -> Config:
    """Parse raw_value for the setting, check it, save it and return the new settings."""
    return set_values({dotted_key: raw_value}, path)


def set_values(raw_values: dict[str, str], path: Path | None = None) -> Config:
    """Parse and check every value first, so one bad value saves none; then save them."""
    parsed = [(*_split_key(key), _parse_value(key, raw)) for key, raw in raw_values.items()]
    cfg = load_config(path)
    for section, name, value in parsed:
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})
    save_config(cfg, path)
    return cfg


def _parse_value(dotted_key: str, raw_value: str) -> Any:
    section, name = _split_key(dotted_key)
    key = f"{section}.{name}"
    kind = _SECTIONS[section][name]
    try:
        value = _from_text(raw_value, kind)
    except TypeError:
        raise ValueError(f"Invalid value for {key}: expected {_TYPE_NAMES[kind]}, "
                         f"got {raw_value!r}.") from None
    problem = _check_range(key, value)
    if problem:
        raise ValueError(f"Invalid value for {key}: {problem} (got {raw_value!r}).")
    return value


def settings_from_config(cfg: Config, **overrides: Any) -> ServerSettings:
    """Server settings from the config file, with command-line flags on top.

    An override of None means "flag not given" and keeps the configured value.
    """
    values: dict[str, Any] = {
        "host": cfg.server.host,
        "port": cfg.server.port,
        "context_length": cfg.server.context_length,
        "parallel": cfg.server.parallel,
        "max_queue": cfg.server.max_queue,
        "prefill_budget": cfg.server.prefill_budget,
        "cors": cfg.server.cors,
        "threads": cfg.server.threads or None,
        "share_cpu": cfg.server.share_cpu,
        "log_format": cfg.server.log_format,
        "log_prompts": cfg.server.log_prompts,
        "keepalive_seconds": cfg.server.keepalive_seconds,
    }
    values.update({name: value for name, value in overrides.items() if value is not None})
    return ServerSettings(**values)


def write_atomic(path: Path, text: str, mode: int = 0o666) -> None:
    """Replace path's content in one step: a crash mid-write leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())  # on disk before the rename makes it the file
    tmp.replace(path)


# --- a small TOML writer: tables of scalars and arrays of them are all it needs ---------

_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_STRING_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                   "\f": "\\f", "\r": "\\r"}


def _toml_key(key: str) -> str:
    return key if key and set(key) <= _BARE_KEY_CHARS else _toml_string(key)


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:  # other control characters must be escaped
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return _toml_string(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} values to TOML")


def dumps_toml(tables: dict[str, dict[str, Any]]) -> str:
    """TOML text for tables of scalars (str, int, bool, Path); empty tables are left out."""
    blocks = []
    for table, values in tables.items():
        if not values:
            continue
        lines = [f"[{_toml_key(table)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def dumps_table_arrays(arrays: dict[str, list[dict[str, Any]]]) -> str:
    """TOML text for arrays of tables of scalars and lists of scalars ([[name]] blocks)."""
    blocks = []
    for name, items in arrays.items():
        for values in items:
            lines = [f"[[{_toml_key(name)}]]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()]
            blocks.append("\n".join(lines) + "\n")
    return "".join("\n" + block for block in blocks)
