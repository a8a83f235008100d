"""lmserve ls / ps / load / unload / default / rm: the library and the loaded models of a
server."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any
from urllib.parse import quote

import typer

from lmserve import config
from lmserve.api_keys import API_KEY_ENV
from lmserve.client import CommandError, ServerClient, ServerUnreachableError
from lmserve.commands.config_cmd import load_config_or_exit

Host = Annotated[str | None, typer.Option(help="Server address [default: configured]")]
Port = Annotated[int | None, typer.Option(help="Server port [default: configured]")]


def _use_key(key: str | None) -> str | None:
    if key:  # ServerClient reads it from the environment, as it reads LMSERVE_API_KEY
        os.environ[API_KEY_ENV] = key
    return key


ApiKey = Annotated[str | None, typer.Option(
    "--api-key", callback=_use_key, show_default=False,
    help="The key, if the server needs one [default: $LMSERVE_API_KEY]")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def ls(
    llm: Annotated[bool, typer.Option("--llm", help="Only language models.")] = False,
    embedding: Annotated[bool, typer.Option("--embedding", help="Only embedding models.")]
    = False,
    as_json: AsJson = False, host: Host = None, port: Port = None, api_key: ApiKey = None,
) -> None:
    """List the models in the library."""
    models = _library(host, port)
    if llm or embedding:
        wanted = {"llm"} if llm else set()
        wanted |= {"embedding"} if embedding else set()
        models = [m for m in models if m.get("type") in wanted]
    if as_json:
        typer.echo(json.dumps(models, indent=2))
        return
    if not models:
        typer.echo("No models. Download one with `lmserve get <publisher/repo>`.")
        return
    rows = [("KEY", "TYPE", "ARCH", "PARAMS", "QUANT", "SIZE", "CONTEXT", "LOADED")]
    for m in models:
        key = f"{m['key']} (default)" if m.get("default") else m["key"]
        kind = "unreadable" if m.get("error") else m.get("type", "-")
        rows.append((key, kind, m.get("architecture") or "-",
                     _params(m.get("params")), m.get("quantization") or "-",
                     _size(m.get("size_bytes")), str(m.get("max_context_length") or "-"),
                     ", ".join(i["id"] for i in m.get("loaded_instances", [])) or "-"))
    _table(rows)
    for m in models:
        if m.get("error"):
            typer.echo(f"{m['key']} cannot be loaded: {m['error']}")


def _library(host: str | None, port: int | None) -> list[dict[str, Any]]:
    """From the running server when there is one, else straight from the disk."""
    try:
        return ServerClient(host, port, timeout=30).get("/api/v1/models")["data"]
    except ServerUnreachableError:
        from lmserve.models.library import ModelLibrary

        cfg = load_config_or_exit()
        library = ModelLibrary(cfg.models.dir)
        return [{**e.to_dict(), "default": e.key == cfg.models.default,
                 "loaded_instances": []} for e in library.entries()]



def ps(as_json: AsJson = False, host: Host = None, port: Port = None,
       api_key: ApiKey = None) -> None:
    """List the loaded models: status, slots and queue."""
    models = ServerClient(host, port, timeout=30).get("/api/v1/models")["data"]
    instances = [i for m in models for i in m.get("loaded_instances", [])]
    remotes = [m for m in models if m.get("type") == "remote"]
    if as_json:
        typer.echo(json.dumps(instances, indent=2))
        return
    if remotes:  # served upstream: each upstream's health and requests in flight
        _table([("REMOTE", "UPSTREAM", "HEALTH", "IN FLIGHT")]
               + [(m["key"], u["url"], u["health"], str(u["outstanding"]))
                  for m in remotes for u in m["upstreams"]])
    if not instances:
        typer.echo("No models are loaded.")
        return
    rows = [("IDENTIFIER", "MODEL", "STATUS", "SLOTS", "QUEUED", "CONTEXT", "TTL", "GPU",
             "FLASH", "KV K/V", "BATCH", "MMAP", "MLOCK", "ROPE BASE/SCALE")]
    for i in instances:
        cfg = i["config"]
        ttl = f"{cfg['ttl']:.0f}s" if cfg.get("ttl") else "-"
        rope = "/".join(f"{cfg[k]:g}" if cfg.get(k) else "model"
                        for k in ("rope_freq_base", "rope_freq_scale"))
        rows.append((i["id"], i["model"], i["status"], f"{i['busy_slots']}/{cfg['parallel']}",
                     str(i["queued"]), str(cfg["context_length"]), ttl,
                     f"{cfg['gpu']} ({i['gpu_layers']}/{i['n_layers'] + 1} layers)",
                     cfg["flash_attention"],
                     f"{cfg['kv_cache_type_k']}/{cfg['kv_cache_type_v']}",
                     str(cfg["eval_batch_size"]), _yes(cfg["use_mmap"]),
                     _yes(cfg["keep_in_memory"]), rope))
    _table(rows)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# `lmserve load` options that pass straight to the load (models/load_options.py)
Gpu = Annotated[str | None, typer.Option(
    help="GPU offload: off, max, or the fraction of the layers (0-1). (default: max where "
    "the runtime has a GPU, else off)", show_default=False)]
FlashAttention = Annotated[str | None, typer.Option(
    help="Flash attention: auto, on or off. (default: auto)", show_default=False)]
KvType = Annotated[str | None, typer.Option(
    help="KV-cache type: f16, q8_0, q4_0, ... (default: f16)", show_default=False)]
EvalBatch = Annotated[int | None, typer.Option(
    help="Tokens per llama.cpp evaluation batch. (default: 512)", show_default=False)]
PrefillBudget = Annotated[int | None, typer.Option(
    help="Prompt tokens read per step while other requests generate. (default: "
    "configured)", show_default=False)]
Mmap = Annotated[bool | None, typer.Option(
    "--mmap/--no-mmap", help="Map the model file instead of reading it. (default: mmap)",
    show_default=False)]
KeepInMemory = Annotated[bool | None, typer.Option(
    "--keep-in-memory/--no-keep-in-memory",
    help="Lock the weights in RAM (mlock). (default: no)", show_default=False)]
RopeBase = Annotated[float | None, typer.Option(
    help="RoPE frequency base. (default: the model's)", show_default=False)]
RopeScale = Annotated[float | None, typer.Option(
    help="RoPE frequency scale. (default: the model's)", show_default=False)]


def load(
    model: Annotated[str, typer.Argument(help="Model key (see `lmserve ls`) or GGUF path.")],
    context_length: Annotated[int | None, typer.Option(help="Context per slot.")] = None,
    parallel: Annotated[int | None, typer.Option(help="Requests generated at once.")] = None,
    ttl: Annotated[float | None, typer.Option(help="Idle seconds before unloading.")] = None,
    identifier: Annotated[str | None, typer.Option(help="Name to load it under.")] = None,
    gpu: Gpu = None, flash_attention: FlashAttention = None,
    kv_cache_type_k: KvType = None, kv_cache_type_v: KvType = None,
    eval_batch_size: EvalBatch = None, prefill_budget: PrefillBudget = None,
    mmap: Mmap = None,
    keep_in_memory: KeepInMemory = None,
    rope_freq_base: RopeBase = None, rope_freq_scale: RopeScale = None,
    estimate_only: Annotated[bool, typer.Option("--estimate-only",
                                                help="Print the memory it would need.")]
    = False,
    host: Host = None, port: Port = None, api_key: ApiKey = None,
) -> None:
    """Load a model into the running server."""
    from lmserve.models.load_options import LoadOptionError, normalized

    try:
        options = normalized({
            "gpu": gpu, "flash_attention": flash_attention, "kv_cache_type_k": kv_cache_type_k,
            "kv_cache_type_v": kv_cache_type_v, "eval_batch_size": eval_batch_size,
            "prefill_budget": prefill_budget,
            "use_mmap": mmap, "keep_in_memory": keep_in_memory,
            "rope_freq_base": rope_freq_base, "rope_freq_scale": rope_freq_scale})
    except LoadOptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{exc.param.replace('_', '-')}") \
            from None
    if estimate_only:
        _estimate(model, context_length, parallel, options)
        return
    body = {"model": model, "context_length": context_length, "parallel": parallel,
            "ttl": ttl, "identifier": identifier, "echo_load_config": True, **options}
    out = ServerClient(host, port).post("/api/v1/models/load",
                                        {k: v for k, v in body.items() if v is not None})
    cfg = out["load_config"]
    slots = cfg["parallel"]
    shape = f"context {cfg['context_length']}, {slots} slot{'s' if slots != 1 else ''}"
    if out["status"] == "already_loaded":
        typer.echo(f"{out['instance_id']} is already loaded ({shape}).")
    elif out["status"] == "reloaded":
        typer.echo(f"Reloaded {out['instance_id']} with a new configuration ({shape}) in "
                   f"{out['load_time_seconds']:.1f} s, once its requests in flight had "
                   "finished.")
    else:
        typer.echo(f"Loaded {out['model']} as {out['instance_id']} in "
                   f"{out['load_time_seconds']:.1f} s ({shape}).")
    typer.echo(f"  gpu {cfg['gpu']}, flash attention {cfg['flash_attention']}, KV cache "
               f"{cfg['kv_cache_type_k']}/{cfg['kv_cache_type_v']}, eval batch "
               f"{cfg['eval_batch_size']}{'' if cfg['use_mmap'] else ', no mmap'}"
               f"{', kept in memory' if cfg['keep_in_memory'] else ''}.")


def _estimate(model: str, context_length: int | None, parallel: int | None,
              options: dict[str, Any]) -> None:
    from dataclasses import replace

    from lmserve.models.library import ModelLibrary
    from lmserve.models.load_defaults import LoadDefaults
    from lmserve.models.memory import estimate_file_memory
    from lmserve.models.model import LoadConfig

    cfg = load_config_or_exit()
    entry = ModelLibrary(cfg.models.dir).find(model)
    if entry is None:
        raise typer.BadParameter(f"No model '{model}' in the library.")
    given = {"context_length": context_length, "parallel": parallel, **options}
    saved = LoadDefaults().get(entry.key)  # what a load naming no value would use
    load = replace(LoadConfig(context_length=cfg.server.context_length,
                              parallel=cfg.server.parallel),
                   **{**saved, **{k: v for k, v in given.items() if v is not None}})
    need = estimate_file_memory(entry.path, load)
    on_gpu = f"; {_size(need['gpu'])} on the GPU" if need["gpu"] else ""
    typer.echo(f"{entry.key}: about {_size(need['total'])} "
               f"(weights {_size(need['weights'])}, KV cache {_size(need['kv_cache'])} "
               f"{load.kv_cache_type_k}/{load.kv_cache_type_v}, compute "
               f"{_size(need['compute'])}{on_gpu}).")


def unload(
    model: Annotated[str | None, typer.Argument(help="Identifier or model key.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Unload every model.")] = False,
    host: Host = None, port: Port = None, api_key: ApiKey = None,
) -> None:
    """Unload a model (its in-flight requests finish first)."""
    if not model and not all_:
        raise typer.BadParameter("Name a model, or pass --all.")
    body = {"all": True} if all_ else {"instance_id": model}
    out = ServerClient(host, port).post("/api/v1/models/unload", body)
    typer.echo(f"Unloaded {', '.join(out['unloaded']) or 'nothing'}.")


def default(
    model: Annotated[str | None, typer.Argument(help="Model key to make the default "
                                                "[default: show the current one]")] = None,
    host: Host = None, port: Port = None, api_key: ApiKey = None,
) -> None:
    """Show or set the default model: it serves requests whose model name matches no model
    (e.g. 'local-model'). Saved in the config file as models.default."""
    if model is None:
        current = next((m["key"] for m in _library(host, port) if m.get("default")), None)
        typer.echo(current or "No default model: names matching no model are served by the "
                   "only loaded model.")
        return
    try:
        key = ServerClient(host, port, timeout=30).post("/api/v1/models/default",
                                                        {"model": model})["default"]
        when = "the server uses it from now on"
    except ServerUnreachableError:
        from lmserve.models.library import ModelLibrary

        entry = ModelLibrary(load_config_or_exit().models.dir).find(model)
        if entry is None:
            raise CommandError(f"No model '{model}' in the library (see `lmserve ls`).") \
                from None
        key, when = entry.key, "it applies when the server starts"
    try:
        config.set_value("models.default", key)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    typer.echo(f"The default model is now {key} (saved as models.default; {when}).")


def rm(
    model: Annotated[str, typer.Argument(help="Model key (see `lmserve ls`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
    host: Host = None, port: Port = None, api_key: ApiKey = None,
) -> None:
    """Delete a model's files from the library (refused while it is loaded)."""
    if not yes and not typer.confirm(f"Delete the files of {model} from the library?"):
        raise typer.Exit(1)
    try:
        out = ServerClient(host, port, timeout=60).delete(
            f"/api/v1/models/{quote(model, safe='/@')}")
        key, files = out["deleted"], out["files"]
    except ServerUnreachableError:  # no server, so nothing is loaded: straight from disk
        from lmserve.models.library import ModelLibrary

        try:
            entry, paths = ModelLibrary(load_config_or_exit().models.dir).remove(model)
        except (LookupError, ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
        key, files = entry.key, [str(p) for p in paths]
    typer.echo(f"Removed {key} ({', '.join(files)}).")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
