"""`lmserve remote add|ls|rm`: models served by remote engines, kept as [[remote]]
entries in config.toml. A server reads them when it starts."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Annotated, Any

import typer

from lmserve.client import CommandError, ServerClient, ServerUnreachableError
from lmserve.remote.entries import (
    RemoteModel,
    load_remotes,
    normalized_upstream,
    save_remotes,
)

_RESTART = "A running server takes this up when restarted."


def _entries() -> list[RemoteModel]:
    try:
        return load_remotes()
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def remote_add(
    target: Annotated[str, typer.Argument(help="The id clients will send as `model`; with "
                                          "--discover, the upstream's base URL.")],
    upstream: Annotated[list[str] | None, typer.Option(
        help="An OpenAI-compatible base URL (repeat for several).")] = None,
    discover: Annotated[bool, typer.Option(
        "--discover", help="Add every model the upstream at TARGET lists.")] = False,
    api_key_env: Annotated[str, typer.Option(
        help="The environment variable holding the upstream's key (the key itself is "
             "never stored).")] = "",
    upstream_model: Annotated[str, typer.Option(
        help="The upstream's name of the model, when it differs from the id.")] = "",
    prefix: Annotated[str, typer.Option(
        help="With --discover: put this before each discovered id.")] = "",
    connect_timeout: Annotated[float, typer.Option(min=0.1)] = 5.0,
    read_timeout: Annotated[float, typer.Option(min=0.1)] = 600.0,
) -> None:
    """Serve a model from remote upstreams under an id of this server."""
    entries = _entries()
    try:
        if discover:
            url = normalized_upstream(target)
            added = [RemoteModel(prefix + model_id, (url,), api_key_env=api_key_env,
                                 upstream_model=model_id if prefix else "",
                                 connect_timeout=connect_timeout, read_timeout=read_timeout)
                     for model_id in discovered_ids(url, api_key_env)]
        else:
            if not upstream:
                raise CommandError("Give at least one --upstream URL (or --discover).")
            added = [RemoteModel(target, tuple(normalized_upstream(u) for u in upstream),
                                 api_key_env=api_key_env, upstream_model=upstream_model,
                                 connect_timeout=connect_timeout, read_timeout=read_timeout)]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for entry in added:
        entries = merged(entries, entry)
        now = next(e for e in entries if e.id == entry.id)
        typer.echo(f"{now.id} → {', '.join(now.upstreams)}")
    save_remotes(entries)
    typer.echo(_RESTART)


def merged(entries: list[RemoteModel], new: RemoteModel) -> list[RemoteModel]:
    """`new` added; an entry with its id gains its upstreams (so adding the same model
    from two nodes makes one pool) and takes its other settings."""
    for i, old in enumerate(entries):
        if old.id == new.id:
            upstreams = old.upstreams + tuple(u for u in new.upstreams
                                              if u not in old.upstreams)
            entries = list(entries)
            entries[i] = replace(new, upstreams=upstreams,
                                 upstream_model=new.upstream_model or old.upstream_model,
                                 api_key_env=new.api_key_env or old.api_key_env)
            return entries
    return [*entries, new]


def discovered_ids(url: str, api_key_env: str) -> list[str]:
    """The model ids an OpenAI-compatible server lists at `url`/models."""
    key = os.environ.get(api_key_env) if api_key_env else None
    request = urllib.request.Request(f"{url}/models",
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            listed = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise CommandError(f"{url}/models answered {exc.code}"
                           + (" (is --api-key-env set?)" if exc.code == 401 else ".")) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CommandError(f"Cannot list the models at {url}: {exc}") from None
    # another lmserve node lists its remote models too: route only to what it serves
    ids = [m["id"] for m in listed.get("data", [])
           if isinstance(m, dict) and isinstance(m.get("id"), str)
           and m.get("type") != "remote"]
    if not ids:
        raise CommandError(f"{url}/models lists no models.")
    return ids


def remote_ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the remote models, with each upstream's health when a server is running."""
    try:
        listed = ServerClient(None, None, timeout=30).get("/api/v1/models")["data"]
        rows: list[dict[str, Any]] = [m for m in listed if m.get("type") == "remote"]
    except ServerUnreachableError:
        rows = [{"key": e.id, "upstream_model": e.served_name, "health": "-",
                 "upstreams": [{"url": u, "health": "-", "outstanding": 0}
                               for u in e.upstreams]} for e in _entries()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("No remote models. Add one with `lmserve remote add ID --upstream URL`.")
        return
    for row in rows:
        typer.echo(f"{row['key']} (upstream model {row['upstream_model']}, {row['health']})")
        for up in row["upstreams"]:
            typer.echo(f"  {up['url']}  {up['health']}  outstanding {up['outstanding']}")


def remote_rm(model_id: Annotated[str, typer.Argument(help="The remote model's id.")]) -> None:
    """Stop serving a remote model (its entry leaves config.toml)."""
    entries = _entries()
    kept = [e for e in entries if e.id != model_id]
    if len(kept) == len(entries):
        raise CommandError(f"No remote model '{model_id}'; see `lmserve remote ls`.")
    save_remotes(kept)
    typer.echo(f"Removed remote model {model_id}. {_RESTART}")
