"""What is loaded, and which loaded model a request's `model` string means.

- Loading is idempotent: asking for a loaded model returns its instance, unless a new
  identifier is asked for. A load asking for another context length or slot count than
  the loaded instance has reloads it with them once its in-flight requests finish.
- JIT: a request naming a model in the library that is not loaded loads it first.
- A name that matches no model is served by the default model (loaded just in time if
  need be), else by the only loaded LLM, so clients that hard-code a name keep working.
- A model file is checked before llama.cpp sees it (models/file_check.py), and a load's
  memory estimate is checked against the budget and the machine before it starts.
- Idle instances are unloaded after their TTL; when a load would pass the max-loaded
  count or the memory budget, the least recently used idle instance goes first. An
  instance with requests in flight or queued is never evicted.
- Unloading removes an instance from routing at once and frees it once its in-flight
  requests have finished.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from lmserve.metrics import Metrics, ModelLoad
from lmserve.models import load_options
from lmserve.models.file_check import ModelFileChecks
from lmserve.models.load_defaults import LoadDefaults
from lmserve.models.memory import available_memory, estimate_file_memory, megabytes
from lmserve.models.model import LoadConfig, Model
from lmserve.models.paths import check_model_name, model_id_for
from lmserve.remote.registry import RemoteModels
from lmserve.request_board import RequestBoard
from lmserve.request_context import note_model

log = logging.getLogger("lmserve.models")

# Load options that need a new llama.cpp context when they change.
RELOAD_OPTIONS = ("context_length", "parallel", *load_options.OPTIONS)


class ModelNotFoundError(LookupError):
    def __init__(self, name: str, known: list[str], *, jit: bool = True) -> None:
        listing = ", ".join(known) or "none"
        where = "Available models" if jit else "Loaded models"
        super().__init__(f"The model '{name}' does not exist. {where}: {listing}.")
        self.name = name


class ModelBusyError(RuntimeError):
    """No room to load a model: every loaded instance has requests in flight."""


class ModelTooLargeError(RuntimeError):
    """A load whose memory estimate exceeds the budget or what the machine has."""


class ModelLoadedError(RuntimeError):
    """A model cannot be removed while it is loaded."""


class LoadRefusedError(PermissionError):
    """The caller may use loaded models but not load one (see load_refusal)."""


# Why the current request may not load a model just in time, or None when it may. The
# API sets it for requests from foreign web pages, which must not make the machine load.
load_refusal: ContextVar[str | None] = ContextVar("load_refusal", default=None)


class Library(Protocol):
    def entries(self) -> list[Any]: ...
    def find(self, name: str) -> Any | None: ...


def estimate_memory(model: Model) -> int:
    """The RAM a loaded instance takes, in bytes."""
    return estimate_file_memory(model.path, model.config)["total"]


def _checked(config: LoadConfig) -> LoadConfig:
    """The configuration with its GPU share decided, or LoadOptionError for what the
    runtime or llama.cpp cannot do."""
    from lmserve.engine.runtime import gpus, runtime_info

    if config.gpu is None:  # not asked: everything on a GPU where there is one
        config = replace(config, gpu="max" if gpus() else "off")
    elif config.gpu != "off" and not gpus():
        raise load_options.LoadOptionError(
            "gpu", f"gpu {config.gpu!r} needs a GPU, but this "
            f"llama.cpp runtime ({runtime_info()['backend']}) sees none (see `lmserve "
            "runtime`). Load with gpu 'off', or build the runtime for your GPU "
            "(LMSERVE_BACKEND=cuda or vulkan).")
    load_options.check_combination(
        flash_attention=config.flash_attention, kv_cache_type_v=config.kv_cache_type_v,
        eval_batch_size=config.eval_batch_size, parallel=config.parallel)
    return config


class ModelManager:
    def __init__(
        self,
        library: Library | None = None,
        *,
        defaults: LoadConfig | None = None,
        jit: bool = True,
        jit_ttl: float | None = None,
        max_loaded: int = 0,
        memory_budget: int = 0,
        file_checks: ModelFileChecks | None = None,
        log_prompts: bool = False,
        model_defaults: LoadDefaults | None = None,
        remotes: RemoteModels | None = None,
    ) -> None:
        self.library = library
        # models served upstream: routed before any local lookup, never loaded or evicted
        self.remotes = remotes or RemoteModels()
        self.defaults = defaults or LoadConfig()
        self.model_defaults = model_defaults or LoadDefaults()  # saved per model
        self.jit = jit
        self.jit_ttl = jit_ttl  # idle TTL of models loaded by a request
        self.max_loaded = max_loaded
        self.memory_budget = memory_budget
        self.default: str | None = None  # key or identifier of the default model
        self.file_checks = file_checks or ModelFileChecks()
        self.log_prompts = log_prompts
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, asyncio.Future] = {}
        self._closing: set[asyncio.Task] = set()
        self.metrics = Metrics()
        self.requests = RequestBoard()  # what this process serves, for the app
        self.metrics.track_models(self._model_loads)

    # -- what is loaded -------------------------------------------------------------------

    def loaded(self) -> list[Model]:
        with self._lock:
            return list(self._models.values())

    def get(self, identifier: str) -> Model | None:
        with self._lock:
            return self._models.get(identifier)

    def _instances_of(self, key: str) -> list[Model]:
        return [m for m in self.loaded() if m.key == key]

    # -- loading --------------------------------------------------------------------------

    def _locate(self, name: str, allow_paths: bool) -> tuple[str, Path, Any]:
        """The library key (or file id), path and library entry a load request names.

        A file path is accepted only from the local user (allow_paths); requests name
        models of the library, whose names cannot leave its folder."""
        if not allow_paths:
            check_model_name(name)
        entry = self.library.find(name) if self.library else None
        if entry is not None:
            return entry.key, Path(entry.path), entry
        path = Path(name).expanduser()
        if allow_paths and path.suffix == ".gguf" and path.is_file():
            path = path.resolve()
            for entry in self.library.entries() if self.library else []:
                if Path(entry.path).resolve() == path:  # a library file named by its path
                    return entry.key, path, entry
            return model_id_for(path), path, None
        known = [e.key for e in self.library.entries()] if self.library else []
        raise ModelNotFoundError(name, known)

    def load_now(self, name: str, *, identifier: str | None = None, allow_paths: bool = False,
                 on_progress: Callable[[float], None] | None = None,
                 **options: Any) -> tuple[Model, str]:
        """Loads in the calling thread; returns the instance and what happened:
        "loaded", "already_loaded" or "reloaded" (with the new options).

        allow_paths: `name` may be a GGUF file anywhere (the local user's own choice)."""
        key, path, entry = self._locate(name, allow_paths)
        options = {**options, **load_options.normalized(options)}
        current = self.get(identifier) if identifier else next(iter(self._instances_of(key)),
                                                                None)
        if current is not None and current.key != key:
            raise ValueError(f"The identifier '{identifier}' is already used by "
                             f"'{current.key}'.")
        if current is not None:
            changed = {k: v for k, v in options.items()
                       if k in RELOAD_OPTIONS and v is not None and getattr(current.config, k) != v}
            if not changed and current.failure is None:
                return current, "already_loaded"
            config = replace(current.config, **changed)
            identifier, outcome = current.id, "reloaded"
        else:
            given = {k: v for k, v in options.items() if v is not None}
            config = replace(self.defaults, **{**self.model_defaults.get(key), **given})
            if config.ttl is not None and config.ttl <= 0:
                config = replace(config, ttl=None)
            identifier, outcome = identifier or key, "loaded"
        try:
            config = _checked(config)
            self.file_checks.check(path)
            needed = estimate_file_memory(path, config)
            self._check_fits(key, needed, replacing=current)
            if current is not None:
                self._retire(current, config)
            self._make_room(needed["total"])
            model = Model(identifier, path, config, key=key, entry=entry,
                          metrics=self.metrics, log_prompts=self.log_prompts,
                          on_load_progress=on_progress)
        except Exception:
            self.metrics.load_failures.labels(key).inc()
            raise
        self.metrics.load_time.labels(key).observe(model.load_time_s)
        with self._lock:
            self._models[identifier] = model
        log.info("%s %s as %s in %.1f s (context %d per slot, %d slots, ttl %s, gpu %s, "
                 "flash attention %s, KV %s/%s)", outcome, key, identifier,
                 model.load_time_s, model.context_length, config.parallel,
                 f"{config.ttl:.0f} s" if config.ttl else "none",
                 config.gpu, config.flash_attention,
                 config.kv_cache_type_k, config.kv_cache_type_v)
        return model, outcome

    def _model_loads(self) -> list[ModelLoad]:
        loads = []
        for model in self.loaded():
            status = model.engine.status()
            loads.append(ModelLoad(model.id, model.config.parallel, status.busy,
                                   status.queued))
        return loads

    def _check_fits(self, key: str, needed: dict[str, int], replacing: Model | None) -> None:
        """Refuses a load that could never fit, before any memory is spent on it."""
        what = (f"Loading {key} needs about {megabytes(needed['total'])} "
                f"(weights {megabytes(needed['weights'])}, KV cache "
                f"{megabytes(needed['kv_cache'])}, compute {megabytes(needed['compute'])})")
        if self.memory_budget and needed["total"] > self.memory_budget:
            raise ModelTooLargeError(
                f"{what}, more than the memory budget of {megabytes(self.memory_budget)} "
                "(models.memory_budget_mb). Load it with a smaller context_length or "
                "parallel or a q8_0 KV cache, or raise the budget.")
        available = available_memory()
        if available is None:
            return
        # what eviction (or the reload) could free
        reclaimable = sum(estimate_memory(m) for m in self.loaded()
                          if m is replacing or not m.busy)
        if needed["total"] > available + reclaimable:
            raise ModelTooLargeError(
                f"{what}, but this machine has only {megabytes(available)} available"
                + (f" (plus {megabytes(reclaimable)} held by idle models)"
                   if reclaimable else "")
                + ". Load it with a smaller context_length or parallel, or a q8_0 KV "
                "cache (kv_cache_type_k and kv_cache_type_v).")

    def _retire(self, model: Model, new: LoadConfig) -> None:
        """Takes an instance out of routing, lets its in-flight requests finish, frees it."""
        with self._lock:
            self._models.pop(model.id, None)
        log.info("reloading %s with context %d, %d slots (was %d, %d) once its requests in "
                 "flight finish", model.id, new.context_length, new.parallel,
                 model.config.context_length, model.config.parallel)
        while model.busy:
            time.sleep(0.05)
        model.close()

    async def load(self, name: str, *, identifier: str | None = None,
                   on_progress: Callable[[float], None] | None = None,
                   **options: Any) -> tuple[Model, str]:
        """Loads off the event loop; concurrent loads of the same model share one.

        on_progress: called (from the loading thread) with the share of the weights
        loaded, when this call loads them."""
        note_model(name)
        token = identifier or self._key_or_name(name)
        pending = self._loading.get(token)
        if pending is not None:
            model, _ = await asyncio.shield(pending)
            return model, "already_loaded"
        future = asyncio.get_running_loop().create_future()
        self._loading[token] = future
        try:
            result = await asyncio.to_thread(self.load_now, name, identifier=identifier,
                                             on_progress=on_progress, **options)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[token]

    def _key_or_name(self, name: str) -> str:
        entry = self.library.find(name) if self.library else None
        return entry.key if entry is not None else name

    # -- which model a request means ------------------------------------------------------

    async def resolve(self, name: str, *, ttl: float | None = None,
                      on_progress: Callable[[float], None] | None = None) -> Model:
        """The instance a request's `model` names, loading it just in time if allowed
        (on_progress: as for load)."""
        note_model(name)
        if (pending := self._loading.get(name)) is not None:  # being loaded or reloaded
            await asyncio.shield(pending)
        target, stand_in = self._route(name)
        if target is None:
            raise ModelNotFoundError(name, self.listed_ids(), jit=self.jit)
        if isinstance(target, str):  # a library model, loaded just in time
            if (reason := load_refusal.get()) is not None:
                raise LoadRefusedError(reason)
            if ttl is None and "ttl" not in self.model_defaults.get(target):
                ttl = self.jit_ttl  # a TTL saved for the model wins over the JIT one
            target, _ = await self.load(target, ttl=ttl, on_progress=on_progress)
        if stand_in:
            log.info("model '%s' matches no model: served by %s", name, target.id)
        target.touch()
        note_model(target.id)
        return target

    def serving_id(self, name: str) -> str | None:
        """The id of the model a request naming `name` would be served by, loading nothing."""
        target, _ = self._route(name)
        return target if isinstance(target, str) or target is None else target.id

    def _route(self, name: str) -> tuple[Model | str | None, bool]:
        """Where a request for `name` goes: a loaded instance, a library key to load just
        in time, or nowhere; and whether a stand-in (the default model, or the only loaded
        LLM) serves a name that matches no model."""
        model = self.get(name)
        if model is not None:
            return model, False
        entry = self.library.find(name) if self.library else None
        if entry is not None:
            loaded = self._instances_of(entry.key)
            if loaded:
                return loaded[0], False
            return (entry.key if self.jit else None), False
        return self._stand_in(), True

    def _default_instance(self) -> Model | None:
        if not self.default:
            return None
        return self.get(self.default) or next(iter(self._instances_of(self.default)), None)

    def _stand_in(self) -> Model | str | None:
        if self.default:
            if (model := self._default_instance()) is not None:
                return model
            entry = self.library.find(self.default) if self.library else None
            if entry is not None and self.jit:
                return entry.key
        llms = [m for m in self.loaded() if not m.is_embedding]
        return llms[0] if len(llms) == 1 else None

    def set_default(self, name: str) -> str:
        """Makes a loaded instance or a library model the default; returns its name."""
        if (model := self.get(name)) is not None:
            self.default = model.id
        elif (entry := self.library.find(name) if self.library else None) is not None:
            self.default = entry.key
        else:
            raise ModelNotFoundError(name, self.listed_ids())
        log.info("default model: %s", self.default)
        return self.default

    def is_default(self, name: str) -> bool:
        """Whether `name` (an instance identifier or a library key) is the default model;
        of several instances of it, the one that serves."""
        model = self.get(name)
        if model is None:
            return bool(self.default) and name == self.default
        return model is self._default_instance()

    def listed_ids(self) -> list[str]:
        """What /v1/models lists: every model in the library while JIT is on."""
        ids = [m.id for m in self.loaded()]
        if self.jit and self.library:
            keys = {m.key for m in self.loaded()}
            ids += [e.key for e in self.library.entries()
                    if e.key not in keys and e.error is None]
        return ids

    # -- removing from disk ---------------------------------------------------------------

    def remove(self, name: str) -> tuple[Any, list[Path]]:
        """Deletes a library model's files; refused while any instance of it is loaded."""
        entry = self.library.find(name) if self.library else None
        if entry is None:
            known = [e.key for e in self.library.entries()] if self.library else []
            raise ModelNotFoundError(name, known)
        if loaded := self._instances_of(entry.key):
            raise ModelLoadedError(f"The model '{entry.key}' is loaded (as "
                                   f"{', '.join(m.id for m in loaded)}): unload it first.")
        try:
            return self.library.remove(entry.key)
        except LookupError:  # removed meanwhile
            raise ModelNotFoundError(name, []) from None

    # -- unloading ------------------------------------------------------------------------

    async def unload(self, name: str) -> list[str]:
        """Unloads an instance by identifier, or every instance of a model key."""
        with self._lock:
            targets = [m for m in self._models.values() if name in (m.id, m.key)]
            if not targets and self.library and (entry := self.library.find(name)):
                targets = [m for m in self._models.values() if m.key == entry.key]
            for m in targets:
                del self._models[m.id]
        if not targets:
            raise ModelNotFoundError(name, [m.id for m in self.loaded()], jit=False)
        for m in targets:
            self._close_when_idle(m)
        return [m.id for m in targets]

    async def unload_everything(self) -> list[str]:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for m in models:
            self._close_when_idle(m)
        return [m.id for m in models]

    def _close_when_idle(self, model: Model) -> None:
        async def drain() -> None:
            while model.busy:  # in-flight requests finish first
                await asyncio.sleep(0.1)
            await asyncio.to_thread(model.close)
            log.info("unloaded %s", model.id)

        task = asyncio.get_running_loop().create_task(drain())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def unload_all(self) -> None:
        """At shutdown: free everything now."""
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()

    # -- eviction and TTL -----------------------------------------------------------------

    def _make_room(self, adding: int) -> None:
        """Evicts least recently used idle instances until a load of `adding` bytes fits
        the count and memory limits."""
        while self._over_limits(adding):
            idle = [m for m in self.loaded() if not m.busy]
            if not idle:
                raise ModelBusyError("Cannot load another model: every loaded model "
                                     "is busy and the configured limit is reached.")
            victim = min(idle, key=lambda m: m.last_used)
            with self._lock:
                self._models.pop(victim.id, None)
            log.info("evicting %s (least recently used)", victim.id)
            while victim.busy:  # a request that raced in before it left routing
                time.sleep(0.05)
            victim.close()

    def _over_limits(self, adding: int) -> bool:
        loaded = self.loaded()
        if self.max_loaded and len(loaded) + 1 > self.max_loaded:
            return True
        if self.memory_budget:
            return sum(estimate_memory(m) for m in loaded) + adding > self.memory_budget
        return False

    def expired(self, now: float | None = None) -> list[Model]:
        now = time.monotonic() if now is None else now
        out = []
        for m in self.loaded():
            if m.busy:
                m.touch()  # idle time counts from the end of the last request
            elif m.config.ttl and now - m.last_used > m.config.ttl:
                out.append(m)
        return out

    async def reap_idle(self, interval: float = 1.0) -> None:
        """Background task: unloads instances idle for longer than their TTL."""
        while True:
            await asyncio.sleep(interval)
            for model in self.expired():
                log.info("%s idle for %.0f s: unloading (ttl)", model.id, model.config.ttl)
                try:
                    await self.unload(model.id)
                except ModelNotFoundError:
                    pass
