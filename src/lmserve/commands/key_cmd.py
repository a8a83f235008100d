"""`lmserve key create|list|revoke`: the API keys a server accepts.

Keys are managed on the machine itself, in `$LMSERVE_HOME/keys.json`, which holds only
their hashes; a running server picks up changes at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Annotated

import typer

from lmserve import api_keys


def key_create(
    name: Annotated[str | None, typer.Option(help="A name to recognise the key by.")] = None,
    scope: Annotated[str, typer.Option(help="inference: the /v1 routes; admin: also load, "
                                       "unload, download and logs.")] = "inference",
) -> None:
    """Create a key and print it (once: only its hash is kept). The first key turns
    keys on for every route but /health."""
    if scope not in api_keys.SCOPES:
        raise typer.BadParameter(f"use one of: {', '.join(api_keys.SCOPES)}.",
                                 param_hint="--scope")
    try:
        secret, record = api_keys.create_key(name, scope)  # type: ignore[arg-type]
    except ValueError as exc:  # an unreadable key file
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(secret)
    typer.echo(f"Created {record.scope} key {record.name!r} (id {record.id}). Keep it now: "
               "it cannot be shown again.", err=True)


def key_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the keys (their ids, names and scopes; never the keys themselves)."""
    keys = _read_or_exit()
    if as_json:
        typer.echo(json.dumps([{k: v for k, v in asdict(key).items() if k != "sha256"}
                               for key in keys], indent=2))
        return
    if not keys:
        typer.echo("No keys: the server needs none (unless started with --api-key).")
        return
    for key in keys:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(key.created_at))
        typer.echo(f"{key.id}  {key.scope:<9}  {created}  {key.name}")


def key_revoke(
    key: Annotated[str, typer.Argument(help="The id or name of the key.")],
) -> None:
    """Revoke a key: requests sending it are refused from now on."""
    try:
        record = api_keys.revoke_key(key)
    except (LookupError, ValueError) as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Revoked key {record.name!r} (id {record.id}).")


def _read_or_exit() -> list[api_keys.StoredKey]:
    try:
        return api_keys.read_keys()
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
