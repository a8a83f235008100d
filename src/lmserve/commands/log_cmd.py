"""lmserve log stream: follow the server's log."""

from __future__ import annotations

import json
import time

import typer

from lmserve.client import ServerClient
from lmserve.commands.models_cmd import ApiKey, AsJson, Host, Port


def log_stream(
    as_json: AsJson = False,
    host: Host = None, port: Port = None, api_key: ApiKey = None,
) -> None:
    """Print the server's log as it is written (Ctrl-C stops)."""
    client = ServerClient(host, port)
    try:
        for entry in client.events("/api/v1/logs/stream"):
            if as_json:
                typer.echo(json.dumps(entry))
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(entry["time"]))
                tag = f" [{entry['request_id']}]" if entry.get("request_id") else ""
                typer.echo(f"{stamp} {entry['level'].upper()} {entry['logger']}{tag}: "
                           f"{entry['message']}")
    except KeyboardInterrupt:
        pass


