"""lmserve chat: talk to a model from the terminal, streamed."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from lmserve.client import ServerClient
from lmserve.commands.models_cmd import ApiKey, Host, Port


def chat(
    model: Annotated[str | None, typer.Argument(help="Model key or identifier "
                                                "[default: the default model]")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", "-p",
                                               help="Ask once and exit.")] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")]
    = None,
    host: Host = None, port: Port = None, api_key: ApiKey = None,
) -> None:
    """Chat with a model; without -p, an interactive session (empty line or Ctrl-D ends)."""
    client = ServerClient(host, port)
    if model is None:
        library = client.get("/api/v1/models")["data"]
        candidates = [m["key"] for m in library if m.get("default")]
        candidates += [i["id"] for m in library for i in m.get("loaded_instances", [])]
        if not candidates:
            raise typer.BadParameter("No model is loaded: name one (see `lmserve ls`).")
        model = candidates[0]
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        messages.append({"role": "user", "content": prompt})
        _reply(client, model, messages)
        return
    typer.echo(f"Chatting with {model}. An empty line ends the session.", err=True)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        messages.append({"role": "assistant", "content": _reply(client, model, messages)})


def _reply(client: ServerClient, model: str, messages: list[dict[str, Any]]) -> str:
    parts = []
    body = {"model": model, "messages": messages, "stream": True}
    for chunk in client.events("/v1/chat/completions", body):
        for choice in chunk.get("choices", []):
            text = choice["delta"].get("content") or ""
            parts.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)
