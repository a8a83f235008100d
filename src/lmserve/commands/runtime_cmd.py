"""lmserve runtime: the llama.cpp build lmserve runs on (backend, version, CPU features,
GPUs), as the running server reports it, else as this installation would load it."""

from __future__ import annotations

import json
from typing import Any

import typer

from lmserve.client import ServerClient, ServerUnreachableError
from lmserve.commands.models_cmd import ApiKey, AsJson, Host, Port


def describe_gpus(gpus: list[dict[str, Any]]) -> str:
    if not gpus:
        return "none"
    return "; ".join(f"{g['name']} ({g['description']}, {g['memory_free'] / 2**30:.1f} of "
                     f"{g['memory_total'] / 2**30:.1f} GB free)" for g in gpus)


def runtime(as_json: AsJson = False, host: Host = None, port: Port = None,
            api_key: ApiKey = None) -> None:
    """Show the llama.cpp runtime: backend, version, CPU features and GPUs."""
    try:
        info = ServerClient(host, port, timeout=30).get("/api/v1/runtime")
        source = "the running server"
    except ServerUnreachableError:
        from lmserve.engine.runtime import runtime_info

        info, source = runtime_info(), "this installation (no server running)"
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    cpu = info["cpu_features"]
    typer.echo(f"Runtime of {source}:")
    typer.echo(f"  backend: {info['backend']} (ggml backends: {', '.join(info['backends'])})")
    typer.echo(f"  llama.cpp: {info['llama_cpp_version']} (llama-cpp-python "
               f"{info['llama_cpp_python_version']})")
    typer.echo(f"  CPU features compiled in: {' '.join(cpu['compiled']) or 'none'}")
    typer.echo(f"  CPU features used on this CPU: {' '.join(cpu['used']) or 'none'}")
    if cpu["not_compiled"]:
        typer.echo(f"  this CPU also has (not compiled in): {' '.join(cpu['not_compiled'])}")
    typer.echo(f"  GPUs: {describe_gpus(info['gpus'])}")
    if not info["gpus"]:
        typer.echo("  Loads run on the CPU; `gpu: max` is refused. A GPU build: "
                   "LMSERVE_BACKEND=cuda make install (see the README).")
