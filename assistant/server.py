"""The HTTP service: chat API, Server-Sent Events, OpenAI-compatible API and web page.

A thin front end over one Assistant per process (loaded at start-up, shared by every
request through a dependency) and a conversation store (assistant/store.py).

    assistant serve --index indexes/starter          # then open http://127.0.0.1:8000/
    uvicorn --factory assistant.server:app_from_env  # settings from ASSISTANT_* only

Routes (documented by the app's own OpenAPI at /docs):
    POST   /v1/conversations                     start a conversation with a question
    POST   /v1/conversations/{id}/turns          ask a follow-up in it
    GET    /v1/conversations/{id}                read it back
    DELETE /v1/conversations/{id}                delete it
    POST   /v1/chat/completions, GET /v1/models  OpenAI-compatible
    GET    /healthz, /readyz, /                  liveness, readiness, web page
Asking with ``"stream": true`` answers with Server-Sent Events instead of JSON.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from starlette.exceptions import HTTPException

from assistant import __version__
from assistant.assistant import Assistant, QuestionError
from assistant.settings import Settings
from assistant.store import (
    ConversationFull,
    ConversationNotFound,
    ConversationStore,
    StoredTurn,
    open_store,
)
from assistant.types import Answer, Turn

log = logging.getLogger("assistant.server")
WEB_DIR = FilePath(__file__).parent / "web"
MODEL_ID = "clinical-assistant"
READY_PROBE = "What is the role of CAR T cells?"
READY_CACHE_S = 30.0


# -- the API contract ------------------------------------------------------------------

_CONTROL = {c: " " for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}


def _clean_text(text: str) -> str:
    """Control characters (NUL among them, which PostgreSQL cannot store) become spaces."""
    return text.translate(_CONTROL)


Question = Annotated[
    str,
    Field(min_length=1, pattern=r"[^\s\x00-\x1f\x7f]",
          description="A clinical question (with at least one visible character)",
          examples=["What is the role of CAR T cells in solid tumours?"]),
    AfterValidator(_clean_text),
]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Question
    stream: StrictBool = Field(False, description="answer as Server-Sent Events: `delta` events "
                         "with Markdown text, then one `answer` event (an AskResponse)")


class TurnOut(BaseModel):
    position: int = Field(description="1 for the first question, 2 for the first follow-up, ...")
    question: str
    created_at: datetime
    answer: Answer = Field(description="the structured answer (sections, references, "
                           "disclaimer, the standalone query that was searched)")
    markdown: str = Field(description="the answer rendered as Markdown, disclaimer included")


class AskResponse(BaseModel):
    conversation_id: str
    turn: TurnOut


class ConversationOut(BaseModel):
    id: str
    created_at: datetime
    turns: list[TurnOut]


class ErrorDetail(BaseModel):
    message: str = Field(description="what is wrong and how to fix it")
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error, in the shape OpenAI clients also understand."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = __version__


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    documents: int
    passages: int


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: Annotated[str, AfterValidator(_clean_text)] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Annotated[str, AfterValidator(_clean_text)] | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; sampling options (temperature, max_tokens, ...) are accepted
    and ignored: answers are extractive."""

    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False  # 0 or "yes" is a client error, not a guess


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage = Usage()


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "clinical-assistant"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


COMMON_ERRORS = _errors(400, 401, 413, 422, 429)

def _sse_doc(description: str, events: list[str] | None = None) -> dict:
    """An OpenAPI 3.1 text/event-stream response: the schema describes each event."""
    event = {"type": "string", **({"enum": events} if events else {})}
    return {"description": description, "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"],
        "properties": {"event": event, "data": {"type": "string"}}}}}}


ASK_STREAM = _sse_doc(
    "With `stream: true`: `delta` events (`{\"text\": ...}`, Markdown as it comes), then "
    "one `answer` event (an AskResponse), or an `error` event (an ErrorResponse).",
    ["delta", "answer", "error"])
CHAT_STREAM = _sse_doc("With `stream: true`: chat.completion.chunk objects, then `[DONE]`.")

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
    405: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error",
    422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable",
}


# -- shared state: one Assistant and store per process ----------------------------------

class RateLimiter:
    """Token bucket per caller: `per_minute` requests, refilled continuously."""

    def __init__(self, per_minute: int):
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        """0 when the request may go ahead, else seconds until it may."""
        now = time.monotonic()
        with self.lock:
            if len(self.buckets) > 10_000:  # forget callers whose bucket is full again
                self.buckets = {k: v for k, v in self.buckets.items()
                                if v[0] + (now - v[1]) * self.rate < self.capacity}
            tokens, last = self.buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


@dataclass
class Service:
    settings: Settings
    assistant: Assistant
    store: ConversationStore
    limiter: RateLimiter
    ready_until: float = 0.0


def get_service(request: Request) -> Service:
    service = request.app.state.service
    if service is None:
        raise HTTPException(503, "the index is still loading: retry shortly",
                            headers={"Retry-After": "5"})
    return service


bearer = HTTPBearer(auto_error=False, description="an API key as `Authorization: Bearer KEY`")
key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                          description="an API key (alternative to the bearer header)")


def caller(request: Request, service: Annotated[Service, Depends(get_service)],
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
           header_key: Annotated[str | None, Depends(key_header)]) -> str:
    """The owner of the request's conversations (a digest of its API key, or
    "anonymous" when the service has no keys), after authentication and rate limiting."""
    keys = service.settings.api_keys
    if keys:
        given = credentials.credentials if credentials else header_key
        valid = given is not None and any(
            secrets.compare_digest(given.encode("utf-8", "replace"),
                                   k.get_secret_value().encode("utf-8")) for k in keys)
        if not valid:
            raise HTTPException(401, "a valid API key is required: send `Authorization: "
                                "Bearer KEY` or `X-API-Key: KEY`",
                                headers={"WWW-Authenticate": "Bearer"})
        owner = hashlib.sha256(given.encode("utf-8")).hexdigest()[:32]
        limit_key = owner
    else:
        owner = "anonymous"
        limit_key = request.client.host if request.client else "anonymous"
    wait = service.limiter.wait_s(limit_key)
    if wait:
        raise HTTPException(
            429, f"rate limit of {service.settings.rate_limit_per_minute} requests per "
            f"minute exceeded (ASSISTANT_RATE_LIMIT_PER_MINUTE): retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))})
    return owner


ServiceDep = Annotated[Service, Depends(get_service)]
OwnerDep = Annotated[str, Depends(caller)]
ConversationId = Annotated[str, Path(max_length=64, description="the id returned when "
                                     "the conversation was started")]


# -- helpers ---------------------------------------------------------------------------

def _turn_out(turn: StoredTurn, answer: Answer | None = None) -> TurnOut:
    answer = answer or Answer.model_validate_json(turn.answer_json)
    return TurnOut(position=turn.position, question=turn.question,
                   created_at=datetime.fromtimestamp(turn.created_at, timezone.utc),
                   answer=answer, markdown=answer.to_markdown())


def _history(turns: list[StoredTurn]) -> list[Turn]:
    history = []
    for t in turns:  # read as plain JSON: the stored answer was validated when it was made
        answer = json.loads(t.answer_json)
        shown = [s["text"] for section, part in (("guidelines", "statements"),
                                                 ("guidelines", "key_points"),
                                                 ("research", "statements"))
                 for s in answer[section][part]]
        history.append(Turn(question=t.question, standalone_query=answer["standalone_query"],
                            shown=shown, cited=[r["doc_id"] for r in answer["references"]]))
    return history


def _log_turn(service: Service, conversation_id: str, position: int, answer: Answer) -> None:
    extra = f" question={answer.question!r}" if service.settings.log_questions else ""
    log.info("answered conversation=%s… turn=%d chars=%d references=%d ms=%.0f%s",
             conversation_id[:6], position, len(answer.question), len(answer.references),
             answer.timings_ms.get("total", 0), extra)


def _sse(event: str | None, data: Any) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _error_json(status: int, message: str, code: str | None = None,
                param: str | None = None) -> dict:
    detail = ErrorDetail(message=message, type=ERROR_TYPES.get(status, "server_error"),
                         code=code, param=param)
    return ErrorResponse(error=detail).model_dump()


def _stream_headers() -> dict[str, str]:
    return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _ask(service: Service, owner: str, conversation_id: str | None, question: str,
         stream: bool):
    """Answer a question, new conversation (id None) or follow-up, and store the turn."""
    history: list[Turn] = []
    if conversation_id is not None:
        conversation = service.store.get(conversation_id, owner)
        limit = service.settings.max_turns_per_conversation
        if len(conversation.turns) >= limit:
            raise ConversationFull(f"this conversation has reached its limit of {limit} "
                                   "turns (ASSISTANT_MAX_TURNS_PER_CONVERSATION): start a "
                                   "new conversation")
        history = _history(conversation.turns)

    def store(answer: Answer) -> AskResponse:
        if conversation_id is None:
            created = service.store.create(owner, answer.question, answer.model_dump_json())
            cid, turn = created.id, created.turns[0]
        else:
            cid = conversation_id
            turn = service.store.append(cid, owner, answer.question, answer.model_dump_json(),
                                        service.settings.max_turns_per_conversation)
        _log_turn(service, cid, turn.position, answer)
        return AskResponse(conversation_id=cid, turn=_turn_out(turn, answer))

    if not stream:
        return store(service.assistant.ask(question, history))

    events = service.assistant.ask_stream(question, history)
    first = next(events)  # a bad question fails here, before the 200 is sent

    def body() -> Iterator[str]:
        try:
            for event in itertools.chain([first], events):
                if event["type"] == "delta":
                    yield _sse("delta", {"text": event["text"]})
                elif event["type"] == "answer":
                    yield _sse("answer", store(event["answer"]).model_dump(mode="json"))
        except ConversationNotFound:
            yield _sse("error", _error_json(404, "the conversation was deleted meanwhile"))
        except ConversationFull as exc:
            yield _sse("error", _error_json(409, str(exc)))
        except Exception:
            log.exception("streamed answer failed")
            yield _sse("error", _error_json(500, "internal error: the answer was not stored"))

    return StreamingResponse(body(), media_type="text/event-stream", headers=_stream_headers())


def _openai_history(assistant: Assistant, messages: list[ChatMessage]
                    ) -> tuple[str, list[Turn]]:
    """The last user message is the question; earlier user messages are the
    conversation, with the standalone query the assistant searched for each (rebuilt
    without a language model: cheap, and the same for every request)."""
    if messages[-1].role != "user":
        raise HTTPException(400, "the last message must be the user's question "
                            "(role \"user\")")
    questions = [m.text() for m in messages if m.role == "user"]
    # What the assistant said after each question, so that a follow-up does not repeat it.
    replies: list[str] = []
    for m in messages:
        if m.role == "user":
            replies.append("")
        elif m.role == "assistant" and replies:
            replies[-1] += " " + m.text()
    history: list[Turn] = []
    for question, reply in zip(questions[:-1], replies):  # what was searched for them
        searched, _ = assistant.search_query(question, history, use_model=False)
        history.append(Turn(question=question, standalone_query=searched.text,
                            shown=[reply] if reply.strip() else []))
    return questions[-1], history


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413, whether the
    size is announced (Content-Length) or not (chunked)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        message = (f"the request body is larger than {self.max_bytes} bytes "
                   "(ASSISTANT_MAX_REQUEST_BYTES)")
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await JSONResponse(_error_json(400, "invalid Content-Length header"),
                                          400)(scope, receive, send)
            if int(length) > self.max_bytes:
                return await JSONResponse(_error_json(413, message), 413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, message)
            return event

        await self.app(scope, limited_receive, send)


# -- the app ---------------------------------------------------------------------------

def create_app(settings: Settings | None = None, *, assistant: Assistant | None = None,
               store: ConversationStore | None = None) -> FastAPI:
    """The FastAPI app. The Assistant (embedder + index) is loaded once, at start-up,
    unless one is given; the store defaults to settings.conversations_db."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio.to_thread

        nonlocal assistant, store
        if assistant is None:
            assistant = await anyio.to_thread.run_sync(Assistant.open, None, settings)
        own_store = store is None
        store = store or open_store(settings)
        app.state.service = Service(settings, assistant, store,
                                    RateLimiter(settings.rate_limit_per_minute))
        log.info("ready: %d documents, %d passages", len(assistant.index.documents),
                 len(assistant.index.passages))
        yield
        app.state.service = None
        if own_store:
            store.close()

    app = FastAPI(
        title="Clinical follow-up assistant",
        version=__version__,
        description="Cited guideline-then-research answers to clinical questions, with "
        "follow-ups read in the light of the conversation. Every answer carries a "
        "professional disclaimer. Errors are `{\"error\": {\"message\": ...}}`.",
        lifespan=lifespan,
    )
    app.state.service = None
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)

    # Errors: one shape, a message that says what is wrong, never a stack trace.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}: see /docs"
        return JSONResponse(_error_json(exc.status_code, message), exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            if error["type"] == "json_invalid":
                reason = error.get("ctx", {}).get("error", "")
                return JSONResponse(_error_json(400, f"the request body is not valid JSON: "
                                                f"{reason}", "json_invalid"), 400)
            where = ".".join(str(p) for p in error["loc"] if p != "body") or "body"
            problems.append(f"{where}: {error['msg']}")
        return JSONResponse(_error_json(422, "; ".join(problems), "validation_error",
                                        problems and problems[0].split(":")[0]), 422)

    @app.exception_handler(QuestionError)
    async def bad_question(request: Request, exc: QuestionError):
        return JSONResponse(_error_json(422, str(exc), "invalid_question", "question"), 422)

    @app.exception_handler(ConversationNotFound)
    async def not_found(request: Request, exc: ConversationNotFound):
        return JSONResponse(_error_json(404, "no such conversation (it may have been "
                                        "deleted, or belongs to another API key)"), 404)

    @app.exception_handler(ConversationFull)
    async def full(request: Request, exc: ConversationFull):
        return JSONResponse(_error_json(409, str(exc), "conversation_full"), 409)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("internal error on %s %s: %s", request.method, request.url.path,
                  type(exc).__name__)
        return JSONResponse(_error_json(500, "internal error"), 500)

    # -- conversations --

    @app.post("/v1/conversations", status_code=201, response_model=AskResponse,
              tags=["conversations"], summary="Start a conversation with a question",
              responses={**COMMON_ERRORS, 200: ASK_STREAM})
    def start_conversation(body: AskRequest, service: ServiceDep, owner: OwnerDep):
        return _ask(service, owner, None, body.question, body.stream)

    @app.post("/v1/conversations/{conversation_id}/turns", status_code=201,
              response_model=AskResponse, tags=["conversations"],
              summary="Ask a follow-up question in a conversation",
              responses={**COMMON_ERRORS, **_errors(404, 409),
                         200: ASK_STREAM})
    def follow_up(conversation_id: ConversationId, body: AskRequest, service: ServiceDep,
                  owner: OwnerDep):
        return _ask(service, owner, conversation_id, body.question, body.stream)

    @app.get("/v1/conversations/{conversation_id}", response_model=ConversationOut,
             tags=["conversations"], summary="Read a conversation back",
             responses={**COMMON_ERRORS, **_errors(404)})
    def read_conversation(conversation_id: ConversationId, service: ServiceDep,
                          owner: OwnerDep):
        conversation = service.store.get(conversation_id, owner)
        return ConversationOut(
            id=conversation.id,
            created_at=datetime.fromtimestamp(conversation.created_at, timezone.utc),
            turns=[_turn_out(t) for t in conversation.turns])

    @app.delete("/v1/conversations/{conversation_id}", status_code=204,
                tags=["conversations"], summary="Delete a conversation",
                responses={**COMMON_ERRORS, **_errors(404)})
    def delete_conversation(conversation_id: ConversationId, service: ServiceDep,
                            owner: OwnerDep) -> None:
        service.store.delete(conversation_id, owner)

    # -- OpenAI-compatible --

    @app.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"],
              summary="OpenAI-compatible chat completion (the messages are the conversation)",
              responses={**COMMON_ERRORS, 200: CHAT_STREAM})
    def chat_completions(body: ChatCompletionRequest, service: ServiceDep, owner: OwnerDep):
        question, history = _openai_history(service.assistant, body.messages)
        limit = service.settings.max_turns_per_conversation
        if len(history) >= limit:
            raise ConversationFull(f"the conversation has more than {limit} user messages "
                                   "(ASSISTANT_MAX_TURNS_PER_CONVERSATION): start a new one")
        completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        if not body.stream:
            answer = service.assistant.ask(question, history)
            _log_turn(service, completion_id, len(history) + 1, answer)
            return ChatCompletion(
                id=completion_id, created=created, model=MODEL_ID,
                choices=[ChatChoice(message=ChatCompletionMessage(content=answer.to_markdown()))])

        events = service.assistant.ask_stream(question, history)
        first = next(events)

        def chunk(delta: dict, finish: str | None = None) -> str:
            return _sse(None, {"id": completion_id, "object": "chat.completion.chunk",
                               "created": created, "model": MODEL_ID,
                               "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish}]})

        def body_events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                for event in itertools.chain([first], events):
                    if event["type"] == "delta":
                        yield chunk({"content": event["text"]})
                    elif event["type"] == "answer":
                        _log_turn(service, completion_id, len(history) + 1, event["answer"])
            except Exception:
                log.exception("streamed completion failed")
                yield _sse(None, _error_json(500, "internal error"))
                return
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(body_events(), media_type="text/event-stream",
                                 headers=_stream_headers())

    @app.get("/v1/models", response_model=ModelList, tags=["openai"],
             summary="OpenAI-compatible model list", responses=_errors(401, 429))
    def models(service: ServiceDep, owner: OwnerDep):
        built = int(service.assistant.index.build.stat().st_mtime)
        return ModelList(data=[ModelCard(id=MODEL_ID, created=built)])

    # -- operations --

    @app.get("/healthz", response_model=Health, tags=["operations"],
             summary="The process is up")
    def healthz():
        return Health()

    @app.get("/readyz", response_model=Ready, tags=["operations"],
             summary="The index is loaded and answering", responses=_errors(503))
    def readyz(service: ServiceDep):
        if time.monotonic() > service.ready_until:
            try:
                service.assistant.ask(READY_PROBE)
            except Exception as exc:
                log.error("readiness probe failed: %s", type(exc).__name__)
                raise HTTPException(503, "the assistant is not answering") from None
            service.ready_until = time.monotonic() + READY_CACHE_S
        index = service.assistant.index
        return Ready(documents=len(index.documents), passages=len(index.passages))

    # -- web page --

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    if not settings.api_keys:
        _document_without_auth(app)
    return app


def _document_without_auth(app: FastAPI) -> None:
    """Without configured keys nothing is checked, so the OpenAPI claims no security."""
    full_schema = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = full_schema()
            schema.get("components", {}).pop("securitySchemes", None)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
        return app.openapi_schema

    app.openapi = openapi


def app_from_env() -> FastAPI:
    """For `uvicorn --factory assistant.server:app_from_env` (e.g. with --workers)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    return create_app(Settings())
