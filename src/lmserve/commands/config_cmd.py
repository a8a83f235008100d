"""`lmserve config show|set|path`: the persistent settings in config.toml."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from lmserve import config


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_config_or_exit() -> config.Config:
    """The config, or a clear message and exit status 1 when the file is wrong."""
    try:
        return config.load_config()
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the effective settings and the config file they come from."""
    path = config.config_file()
    cfg = load_config_or_exit()
    if as_json:
        out = {"path": str(path), "exists": path.exists(), "settings": cfg.to_dict()}
        typer.echo(json.dumps(out, indent=2))
        return
    note = "" if path.exists() else " (not created yet: all defaults)"
    typer.echo(f"Config file: {path}{note}")
    for section, values in cfg.to_dict().items():
        typer.echo("")
        for name, value in values.items():
            typer.echo(f"{section}.{name} = {_format_value(value)}")


def config_set(
    key: Annotated[str, typer.Argument(help="Setting to change, e.g. server.port.")],
    value: Annotated[str, typer.Argument(help="New value, e.g. 8080, true, /data/models.")],
) -> None:
    """Change one setting in the config file."""
    try:
        cfg = config.set_value(key, value)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    key = key.strip()
    typer.echo(f"{key} = {_format_value(cfg.get(key))} (saved to {config.config_file()}); "
               "it applies the next time the server starts.")


def config_path() -> None:
    """Print the config file's path."""
    typer.echo(str(config.config_file()))
