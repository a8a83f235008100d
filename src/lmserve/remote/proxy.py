"""The ASGI layer that sends requests for remote models upstream.

It sits inside the access, limit and logging layers, so a remote request is checked
against the gateway's own keys and limits and logged like any other; it reads the
body's `model` and, when that names a remote model, answers from an upstream instead of
the local routes. Streams pass through event by event as they arrive; a client that
hangs up closes the upstream connection, which cancels the request there.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from lmserve.api.anthropic.messages import error_response as anthropic_error
from lmserve.api.anthropic.messages import validation_message
from lmserve.api.asgi_body import read_body, replaying
from lmserve.api.errors import APIError, error_response
from lmserve.api.serving import stream
from lmserve.api.sse import DONE, sse_data, sse_named
from lmserve.metrics import Metrics
from lmserve.remote.entries import RemoteModel
from lmserve.remote.messages_bridge import ChatEvents, UpstreamChatRun, chat_body
from lmserve.remote.messages_bridge import translator as bridge_translator
from lmserve.remote.pool import Upstream, UpstreamPool
from lmserve.remote.registry import RemoteModels, log
from lmserve.request_context import RequestRecord, current_record, note_error, note_model

# lmserve's route -> the upstream's path under its base URL
ROUTES = {
    "/v1/chat/completions": "/chat/completions",
    "/api/v1/chat/completions": "/chat/completions",
    "/v1/completions": "/completions",
    "/v1/embeddings": "/embeddings",
    "/v1/responses": "/responses",
    "/v1/messages": "/messages",
}
_USAGE_STREAMS = ("/chat/completions", "/completions")  # OpenAI's stream_options
_PASSED_STATUSES = (400, 404, 413, 429)  # the caller's to fix; anything else is a 502
_RETRIED_STATUSES = (502, 503, 504)  # the upstream cannot serve it now; another may
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_FORWARDED_HEADERS = (b"anthropic-version", b"anthropic-beta", b"openai-beta")


class UpstreamError(Exception):
    def __init__(self, status: int, message: str, code: str,
                 type: str = "server_error") -> None:
        super().__init__(message)
        self.status, self.code, self.type = status, code, type


class RemoteRoutes:
    def __init__(self, app: ASGIApp, remotes: RemoteModels, metrics: Metrics) -> None:
        self.app = app
        self.remotes = remotes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.remotes and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] in ROUTES):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client left before sending its body
        payload = _json_object(body)
        remote = self.remotes.find(payload.get("model")) if payload else None
        if remote is None or payload is None:
            await self.app(scope, replaying(body, receive), send)
            return
        exchange = Exchange(scope, receive, send, remote, self.remotes, payload,
                            self.metrics)
        await exchange.run()


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class Exchange:
    """One request to a remote model: the upstream call, its answer relayed, and what
    it counts in the request's record and the metrics."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, remote: RemoteModel,
                 remotes: RemoteModels, payload: dict[str, Any], metrics: Metrics) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.remote = remote
        self.remotes = remotes
        self.pool: UpstreamPool = remotes.pools[remote.id]
        self.metrics = metrics
        self.route = scope["path"]
        self.path = ROUTES[self.route]
        self.original = payload
        self.payload = {**payload, "model": remote.served_name}
        self.bridged = False  # a Messages request sent as a chat completion
        self.strip_usage = self._ask_for_usage()
        self.record: RequestRecord | None = current_record()
        self.started = time.perf_counter()
        self.first_piece: float | None = None
        self.last_piece: float | None = None
        self.pieces = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage_seen = False
        self.headers_sent = False

    def _ask_for_usage(self) -> bool:
        """Streams are asked for their usage, so that it is counted here; returns whether
        the client did not ask for it too (then the usage chunk is not relayed)."""
        if self.payload.get("stream") is not True or self.path not in _USAGE_STREAMS:
            return False
        options = self.payload.get("stream_options")
        options = options if isinstance(options, dict) else {}
        if options.get("include_usage") is True:
            return False
        self.payload["stream_options"] = {**options, "include_usage": True}
        return True

    async def run(self) -> None:
        note_model(self.remote.id)
        if self.record is not None:
            self.record.route = self.route
            self.record.engine_state = self._state
        work = asyncio.ensure_future(self._serve())
        hang_up = asyncio.ensure_future(self._client_left())
        try:
            await asyncio.wait({work, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hang_up.cancel()
        if not work.done():  # the client left: closing the upstream call cancels it there
            work.cancel()
            try:
                await work
            except asyncio.CancelledError:
                pass
            if self.record is not None:
                self.record.finish_reason = "cancelled"
            if not self.headers_sent:
                self.headers_sent = True
                await self.send({"type": "http.response.start", "status": 499,
                                 "headers": []})
                await self.send({"type": "http.response.body", "body": b""})
        else:
            work.result()
        self._count()

    def _state(self) -> str:
        if not self.headers_sent:
            return "queued"
        return "generating" if self.record is None or self.record.status is None \
            else "finished"

    async def _client_left(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass

    async def _serve(self) -> None:
        try:
            upstream, response = await self._open_messages_aware()
        except UpstreamError as exc:
            await self._refuse(exc.status, str(exc), exc.code, exc.type)
            return
        except ValidationError as exc:  # only a bridged Messages request is read here
            await self._refuse(400, validation_message(exc), "invalid_request",
                               "invalid_request_error")
            return
        try:
            if response.status_code >= 400:
                await self._relay_error(upstream, response)
            elif self.bridged:
                await self._relay_bridged(upstream, response)
            elif response.headers.get("content-type", "").startswith("text/event-stream"):
                await self._relay_stream(upstream, response)
            else:
                await self._relay_whole(response)
            upstream.served += 1
        finally:
            upstream.outstanding -= 1
            await response.aclose()

    async def _open_messages_aware(self) -> tuple[Upstream, httpx.Response]:
        """`_open`, with a Messages request sent as a chat completion to upstreams that
        have no /messages route (found out at the first 404 that is not an error of
        theirs about the request)."""
        messages = self.route == "/v1/messages"
        if messages and all(u.messages_api is False for u in self.pool.upstreams):
            self._bridge_messages()
        upstream, response = await self._open()
        if messages and not self.bridged and response.status_code == 404:
            try:
                raw = await response.aread()
            except BaseException:
                upstream.outstanding -= 1
                await response.aclose()
                raise
            if b'"error"' not in raw:  # the route is missing, not the model
                upstream.messages_api = False
                upstream.outstanding -= 1
                await response.aclose()
                self._bridge_messages()
                return await self._open()
        return upstream, response

    def _bridge_messages(self) -> None:
        self.payload = chat_body(self.original, self.remote.served_name)
        self.path = "/chat/completions"
        self.bridged = True

    async def _open(self) -> tuple[Upstream, httpx.Response]:
        """The first upstream that answers with headers; a request that fails before
        then is tried once more on another upstream. The upstream returned has the
        request counted as outstanding."""
        client = self.remotes.client()
        content = json.dumps(self.payload, ensure_ascii=False).encode()
        timeout = httpx.Timeout(self.remote.read_timeout, connect=self.remote.connect_timeout)
        tried: list[Upstream] = []
        failure = UpstreamError(503, f"No upstream of '{self.remote.id}' is available.",
                                "upstream_unavailable")
        for _ in range(2):
            upstream = self.pool.pick(tried)
            if upstream is None:
                break
            tried.append(upstream)
            upstream.outstanding += 1
            request = client.build_request("POST", upstream.url + self.path, content=content,
                                           headers=self._headers(), timeout=timeout)
            try:
                response = await client.send(request, stream=True)
            except asyncio.CancelledError:  # the client left while it was being sent
                upstream.outstanding -= 1
                raise
            except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
                upstream.outstanding -= 1
                raise UpstreamError(504, f"Upstream {upstream.url} did not answer within "
                                    f"{self.remote.read_timeout:g} s.",
                                    "upstream_timeout") from exc
            except (httpx.TransportError, OSError) as exc:
                upstream.outstanding -= 1
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                if upstream.mark_down(reason):
                    log.warning("upstream %s is down (%s)", upstream.url, reason)
                failure = UpstreamError(502, f"Upstream {upstream.url} failed: {reason}",
                                        "upstream_unreachable")
                continue
            if response.status_code in _RETRIED_STATUSES and len(tried) < 2 \
                    and self.pool.pick(tried) is not None:
                upstream.outstanding -= 1
                await response.aclose()
                continue
            return upstream, response
        raise failure

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, "
                   "text/event-stream"}
        if self.record is not None:
            headers["X-Request-Id"] = self.record.request_id
        for name, value in self.scope["headers"]:
            if name.lower() in _FORWARDED_HEADERS:
                headers[name.decode("latin-1")] = value.decode("latin-1")
        # The client's own credential is the gateway's business, never the upstream's.
        if key := self.remote.api_key():
            headers["Authorization"] = f"Bearer {key}"
            if self.path == "/messages":
                headers["x-api-key"] = key
        return headers

    async def _refuse(self, status: int, message: str, code: str, type: str,
                      headers: dict[str, str] | None = None) -> None:
        err = APIError(status, message, type=type, code=code, headers=headers)
        messages = self.route == "/v1/messages"
        response = anthropic_error(err) if messages else error_response(err)
        self.headers_sent = True
        await response(self.scope, self.receive, self.send)

    async def _relay_error(self, upstream: Upstream, response: httpx.Response) -> None:
        raw = await response.aread()
        message, code = _upstream_error(raw)
        status = response.status_code
        if status == 422:
            status = 400  # a validation error is a 400 here
        if status in _PASSED_STATUSES:
            # a rate-limited client learns when to come back, as from the upstream
            wait = response.headers.get("retry-after")
            await self._refuse(status, message, code or "upstream_error",
                               "invalid_request_error",
                               {"Retry-After": wait} if wait else None)
        else:
            await self._refuse(502, f"Upstream {upstream.url} answered {status}: {message}",
                               "upstream_error", "server_error")

    async def _relay_whole(self, response: httpx.Response) -> None:
        raw = await response.aread()
        body = _json_object(raw)
        if body is not None:
            self._note_usage(body)
        await self._send_whole(raw, response.headers.get("content-type", "application/json"),
                               response.status_code)

    async def _send_whole(self, raw: bytes, content_type: str, status: int) -> None:
        self.headers_sent = True
        await self.send({"type": "http.response.start", "status": status,
                         "headers": [(b"content-type", content_type.encode("latin-1")),
                                     (b"content-length", str(len(raw)).encode())]})
        await self.send({"type": "http.response.body", "body": raw})

    async def _start_stream(self, status: int) -> None:
        self.headers_sent = True
        await self.send({"type": "http.response.start", "status": status,
                         "headers": [(b"content-type", b"text/event-stream"),
                                     (b"cache-control", b"no-cache"),
                                     (b"x-accel-buffering", b"no")]})

    async def _relay_stream(self, upstream: Upstream, response: httpx.Response) -> None:
        await self._start_stream(response.status_code)
        pending = b""
        try:
            async for chunk in response.aiter_raw():
                pending += chunk
                out = []
                while (end := _EVENT_END.search(pending)) is not None:
                    event, pending = pending[:end.end()], pending[end.end():]
                    if self._relay_event(event):
                        out.append(event)
                if out:
                    await self.send({"type": "http.response.body", "body": b"".join(out),
                                     "more_body": True})
        except httpx.HTTPError as exc:
            message = self._failed_midway(upstream, exc)
            await self.send({"type": "http.response.body", "body": self._error_event(message),
                             "more_body": True})
        await self.send({"type": "http.response.body", "body": b""})

    def _failed_midway(self, upstream: Upstream, exc: httpx.HTTPError) -> str:
        """Marks the upstream down for a broken connection (not for a slow one); the
        message for the client."""
        reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if not isinstance(exc, httpx.TimeoutException) and upstream.mark_down(reason):
            log.warning("upstream %s is down (%s)", upstream.url, reason)
        note_error("upstream_failed")
        return f"Upstream {upstream.url} failed during the stream: {reason}"

    async def _relay_bridged(self, upstream: Upstream, response: httpx.Response) -> None:
        messages = bridge_translator(self.remote.id)
        if not self.payload.get("stream"):
            chat = ChatEvents()
            payload = _json_object(await response.aread()) or {}
            messages.start()
            for event in chat.of_whole(payload):
                messages.feed(0, event)
            messages.end()
            self._note_usage({"usage": {"prompt_tokens": chat.prompt_tokens,
                                        "completion_tokens": chat.completion_tokens}})
            await self._send_whole(json.dumps(messages.result()).encode(), "application/json",
                                   200)
            return
        run = UpstreamChatRun(response, lambda exc: self._failed_midway(upstream, exc))
        await self._start_stream(200)
        async for frame in stream(run, messages):
            if frame.startswith(b"event: content_block_delta"):
                self._note_piece()
            await self.send({"type": "http.response.body", "body": frame, "more_body": True})
        self._note_usage({"usage": {"prompt_tokens": run.chat.prompt_tokens,
                                    "completion_tokens": run.chat.completion_tokens}})
        await self.send({"type": "http.response.body", "body": b""})

    def _relay_event(self, event: bytes) -> bool:
        """Notes what the event carries; returns whether it is relayed."""
        data = b"\n".join(line[5:].strip() for line in event.splitlines()
                          if line.startswith(b"data:"))
        if not data or data == b"[DONE]":
            return True
        payload = _json_object(data)
        if payload is None:
            return True
        if _is_piece(payload):
            self._note_piece()
        self._note_usage(payload)
        # the usage chunk asked for here, which the client did not ask for
        return not (self.strip_usage and payload.get("choices") == []
                    and payload.get("usage"))

    def _note_piece(self) -> None:
        self.last_piece = time.perf_counter()
        if self.first_piece is None:
            self.first_piece = self.last_piece
        self.pieces += 1
        if self.record is not None:
            self.record.output_pieces = self.pieces

    def _error_event(self, message: str) -> bytes:
        if self.route == "/v1/messages":
            return sse_named("error", {"type": "error", "error": {
                "type": "api_error", "message": message}})
        if self.path == "/responses":
            return sse_named("error", {"type": "error", "code": "upstream_failed",
                                       "message": message, "param": None})
        return sse_data({"error": {"message": message, "type": "server_error",
                                   "param": None, "code": "upstream_failed"}}) + DONE

    def _note_usage(self, payload: dict[str, Any]) -> None:
        for holder in (payload, payload.get("response"), payload.get("message")):
            usage = holder.get("usage") if isinstance(holder, dict) else None
            if not isinstance(usage, dict):
                continue
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            completion = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(prompt, int):
                self.prompt_tokens = max(self.prompt_tokens, prompt)
                self.usage_seen = True
            if isinstance(completion, int):
                self.completion_tokens = max(self.completion_tokens, completion)
                self.usage_seen = True

    def _count(self) -> None:
        ttft = self.first_piece - self.started if self.first_piece is not None else None
        record = self.record
        if record is not None:
            record.ttft_s = ttft
            if self.usage_seen:
                record.add_usage(self.prompt_tokens, self.completion_tokens)
            span = (self.last_piece or 0) - (self.first_piece or 0)
            if self.pieces > 1 and span > 0:
                record.tokens_per_s = round((self.pieces - 1) / span, 2)
        if self.usage_seen:
            self.metrics.observe_finished(self.remote.id, self.prompt_tokens,
                                          self.completion_tokens, 0, ttft)


def _is_piece(payload: dict[str, Any]) -> bool:
    """Whether a stream event carries generated text (or a tool call's part)."""
    kind = payload.get("type")
    if isinstance(kind, str):  # Responses and Anthropic Messages events
        return kind.endswith(".delta") or kind == "content_block_delta"
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return bool(delta.get("content") or delta.get("reasoning_content")
                    or delta.get("tool_calls"))
    return bool(choice.get("text"))


def _upstream_error(raw: bytes) -> tuple[str, str | None]:
    """The message and code of an upstream's error answer, whatever its envelope
    (OpenAI's, Anthropic's, vLLM's flat one, FastAPI's detail, or text)."""
    body = _json_object(raw)
    if body is None:
        text = raw.decode("utf-8", "replace").strip()
        return (text[:500] or "no message"), None
    error = body.get("error", body)
    if isinstance(error, str):
        return error, None
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail")
        code = error.get("code")
        if message:
            return str(message), str(code) if code is not None else None
    return json.dumps(body)[:500], None
