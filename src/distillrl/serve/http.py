"""The HTTP side of `distillrl serve-teacher`: FastAPI on uvicorn (h11), built to face an untrusted network.

- Key: with an API key (`--api-key`, or the DISTILLRL_API_KEY variable), every request but GET /health needs
  `Authorization: Bearer KEY` (compared in constant time: hmac.compare_digest), else 401. vLLM's `--api-key`
  guards /v1/* only; here /tokenize (the tokenizer) and unknown paths are guarded too, and /health (it says "up",
  nothing else) stays open for liveness probes.
- Deadlines: a request's head must arrive within `request_timeout` seconds of the connection (or of the previous
  answer on a kept-alive connection), else the connection is closed; its body within `request_timeout` of the
  head, else 408 and the connection is closed. An idle kept-alive connection is closed after `idle_timeout`.
- Sizes: a head over MAX_HEAD_BYTES is refused by h11 (400); a body over `max_request_bytes` is refused (413)
  from its Content-Length, or as soon as a streamed body passes it (nothing past it is kept). The answer and
  /tokenize caps are TeacherModel's (serve/teacher_model.py).
- Load: the model's work (parsing the JSON, checking it, the forward pass or tokenisation, encoding the answer)
  runs one request at a time in one worker thread, so the event loop keeps answering. At most `max_queue`
  requests are in the worker's hands (running or waiting); one more is answered 503 with Retry-After at once
  (its body unread, so its connection is closed).
  The listen backlog is 2048; more than MAX_CONNECTIONS open connections get uvicorn's 503.
- Errors: every refusal is {"error": {"message", "type", "code"}} with a 4xx/5xx status; malformed JSON
  (deeply nested included) and wrong types are 4xx, never a traceback.
- With a `log` stream (`--log-requests`: stderr), one line per request: `METHOD PATH STATUS rows=R tokens=T MS ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from distillrl.serve.teacher_model import BadRequest, TeacherModel

API_KEY_VARIABLE = "DISTILLRL_API_KEY"
OPEN_PATHS = frozenset({"/health"})  # answered without the key (liveness probes)
MAX_HEAD_BYTES = 16 << 10  # request line and headers (h11's limit)
MAX_CONNECTIONS = 4096  # open connections at most (uvicorn answers 503 past it)
BACKLOG = 2048  # connections the kernel queues before they are accepted


@dataclass(frozen=True)
class ServerLimits:
    request_timeout: float = 30.0  # seconds for a request's head, and then its body, to arrive
    idle_timeout: float = 5.0  # seconds a kept-alive connection may wait for its next request
    max_request_bytes: int = 16 << 20  # body bytes at most (413)
    max_queue: int = 16  # requests running or waiting for the model at most (503 past it)


class Refusal(Exception):
    """An answer other than 200, as {"error": ...}; `close` also closes the connection (the body is not read)."""

    def __init__(self, message: str, status: HTTPStatus, close: bool = False, headers: dict | None = None):
        super().__init__(message)
        self.status, self.close, self.headers = status, close, headers or {}


def error_response(message: str, status: int, headers: dict | None = None) -> Response:
    phrase = HTTPStatus(status).phrase.replace(" ", "")
    body = json.dumps({"error": {"message": message, "type": phrase, "code": status}}).encode()
    return Response(body, status, headers, media_type="application/json")


def head_deadline_protocol(timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline on each request's head, which uvicorn lacks (a client that sends
    a partial head and trickles the rest would hold its connection forever): the connection is closed when no
    complete head arrived within `timeout` seconds of the connection or of the previous answer."""

    class HeadDeadlineProtocol(H11Protocol):
        head_deadline: asyncio.TimerHandle | None = None

        def await_head(self) -> None:
            self.cancel_head_deadline()
            self.head_deadline = self.loop.call_later(timeout, self.transport.close)

        def cancel_head_deadline(self) -> None:
            if self.head_deadline is not None:
                self.head_deadline.cancel()
                self.head_deadline = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.await_head()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a head arrived: a new request-response cycle began
                self.cancel_head_deadline()

        def on_response_complete(self) -> None:
            self.await_head()  # before super(), which starts a pipelined request's cycle
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self.cancel_head_deadline()
            super().connection_lost(exc)

    return HeadDeadlineProtocol


class ModelWorker:
    """One thread that runs the model's work, one request at a time, with at most `max_queue` requests in its
    hands: a request is admitted (or refused 503, before its body is read) on arrival and held until answered."""

    def __init__(self, max_queue: int):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-teacher-model")
        self.max_queue = max_queue
        self.in_hand = 0  # changed on the event loop's thread only

    @contextlib.contextmanager
    def admitted(self):
        if self.in_hand >= self.max_queue:
            raise Refusal(f"busy: {self.in_hand} requests are queued for the model (--max-queue); retry shortly",
                          HTTPStatus.SERVICE_UNAVAILABLE, close=True, headers={"Retry-After": "1"})  # fmt: skip
        self.in_hand += 1
        try:
            yield
        finally:
            self.in_hand -= 1

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


async def read_body(request: Request, limits: ServerLimits) -> bytes:
    """The request's body: at most max_request_bytes (413, judged from Content-Length before reading, and again
    while it streams), all of it within request_timeout seconds (408); either closes the connection."""
    length = request.headers.get("content-length")  # digits: h11 refuses any other (400)
    if length is not None and int(length) > limits.max_request_bytes:
        raise Refusal(f"the request has {length} bytes (Content-Length), more than {limits.max_request_bytes}",
                      HTTPStatus.REQUEST_ENTITY_TOO_LARGE, close=True)  # fmt: skip
    chunks, size = [], 0

    async def collect() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_request_bytes:
                raise Refusal(f"the request's body passed {limits.max_request_bytes} bytes",
                              HTTPStatus.REQUEST_ENTITY_TOO_LARGE, close=True)  # fmt: skip
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), limits.request_timeout)
    except asyncio.TimeoutError:  # TimeoutError from 3.11; its own class on 3.10
        raise Refusal(f"the body did not arrive within {limits.request_timeout:g} s (--request-timeout)",
                      HTTPStatus.REQUEST_TIMEOUT, close=True) from None  # fmt: skip
    return b"".join(chunks)


def parse_object(data: bytes) -> dict:
    """A JSON object from a request body; anything else (not JSON, nested past the parser's depth, an array) is
    a BadRequest."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"the body is not valid JSON ({str(error)[:120]})") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def run_model(work, data: bytes, state) -> bytes:
    """On the worker thread: parse, answer with `work(body)` and encode; notes rows and tokens for the log."""
    body = parse_object(data)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(p, list) for p in prompt):
        state.rows, state.tokens = len(prompt), sum(len(p) for p in prompt)
    return json.dumps(work(body)).encode()


class Gate:
    """ASGI middleware around the app: the key check (before anything else) and the request's log line (to `log`,
    when it is not None)."""

    def __init__(self, app, api_key: str | None, log):
        self.app, self.log = app, log
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), []
        state = scope.setdefault("state", {})  # request.state: run_model fills in rows and tokens
        state["rows"] = state["tokens"] = "-"

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        given = dict(scope["headers"]).get(b"authorization", b"")
        if (self.expected is not None and scope["path"] not in OPEN_PATHS
                and not hmac.compare_digest(given, self.expected)):  # fmt: skip
            refusal = error_response("this server needs its API key: Authorization: Bearer KEY", 401,
                                     {"WWW-Authenticate": "Bearer"})  # fmt: skip
            await refusal(scope, receive, sending)
        else:
            await self.app(scope, receive, sending)
        if self.log is None:
            return
        path = json.dumps(scope["path"][:120])[1:-1]  # escaped: a path cannot forge log lines
        print(f"{scope['method']} {path} {status[0] if status else '-'} rows={state['rows']} tokens={state['tokens']} "
              f"{1000 * (time.monotonic() - started):.1f} ms", file=self.log, flush=True)  # fmt: skip


def build_app(teacher: TeacherModel, api_key: str | None, limits: ServerLimits, log=None) -> Gate:
    """The ASGI app: the endpoints of teacher_model.py behind the key check and request log (to `log`, None: no
    log) described above."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    worker = ModelWorker(limits.max_queue)

    @app.exception_handler(HTTPException)
    async def routing_error(request: Request, error: HTTPException) -> Response:  # 404, 405
        return error_response(f"{request.method} {request.url.path[:120]}: {error.detail}", error.status_code)

    @app.exception_handler(Refusal)
    async def refused(request: Request, error: Refusal) -> Response:
        return error_response(str(error), error.status, error.headers | ({"Connection": "close"} if error.close else {}))

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> Response:
        return error_response(str(error), error.status)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, error: ClientDisconnect) -> Response:
        return error_response("the client went away", 400, {"Connection": "close"})

    @app.get("/health")
    async def health() -> Response:
        return Response(b"", 200)

    @app.get("/v1/models")
    async def models() -> Response:
        return Response(json.dumps(teacher.models()).encode(), media_type="application/json")

    def model_route(path: str, answer_of) -> None:
        """POST `path`: admitted to the queue, the body read under its deadline, `answer_of(body)` on the worker."""

        async def route(request: Request) -> Response:
            with worker.admitted():
                data = await read_body(request, limits)
                answer = await worker.run(run_model, answer_of, data, request.state)
            return Response(answer, media_type="application/json")

        app.add_api_route(path, route, methods=["POST"])

    model_route("/v1/completions", teacher.completions)
    model_route("/tokenize", teacher.tokenize)

    return Gate(app, api_key, log)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port); an OSError when that is not possible."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


class TeacherServer:
    """`teacher` served on a listening socket (bind()) with `limits`, optionally an API key and a request log."""

    def __init__(self, teacher: TeacherModel, listening: socket.socket, api_key: str | None = None,
                 limits: ServerLimits = ServerLimits(), log=None):  # fmt: skip
        self.socket = listening
        config = uvicorn.Config(
            build_app(teacher, api_key, limits, log), http=head_deadline_protocol(limits.request_timeout),
            lifespan="off", log_level="error", access_log=False, server_header=False, backlog=BACKLOG,
            timeout_keep_alive=limits.idle_timeout, limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.address = self.socket.getsockname()[:2]
        self.thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve on this thread until stop() or Ctrl-C (on the main thread)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self) -> "TeacherServer":
        """Serve on a daemon thread; returns once the server accepts connections."""
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
