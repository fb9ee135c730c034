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
Asking with ``"stream": true`` answers with Server-Sent Events instead of JSON. A turn
sent with an ``Idempotency-Key`` header is stored once however often it is retried.
"""

from __future__ import annotations

import functools
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

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.exceptions import HTTPException

from assistant import __version__
from assistant.assistant import Assistant, QuestionError
from assistant.limits import MemoryRateLimiter, RateLimiter, SharedRateLimiter
from assistant.settings import Settings
from assistant.store import (
    ConversationFull,
    ConversationNotFound,
    ConversationStore,
    IdempotencyKey,
    IdempotencyKeyReused,
    PostgresStore,
    Replayed,
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
    """Control characters (NUL among them, which PostgreSQL cannot store) become spaces.
    Unpaired UTF-16 surrogates (JSON "\\ud800"), which are not Unicode text and which
    neither the tokenizer nor the database can take, are refused."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"the text holds an unpaired UTF-16 surrogate (\\u{ord(text[exc.start]):04x} at "
            f"character {exc.start}), which is not valid Unicode: send the text as UTF-8, "
            "or escape characters outside the BMP as surrogate pairs") from None
    return text.translate(_CONTROL)


Text = Annotated[str, AfterValidator(_clean_text)]


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
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    function: dict[str, Any] | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str


def _number(low: float, high: float) -> Any:
    return Field(None, ge=low, le=high, allow_inf_nan=False)


class ChatCompletionRequest(BaseModel):
    """OpenAI's request. Options are checked as OpenAI checks them. Sampling options
    (temperature, top_p, penalties, seed, stop) do not change an extractive answer;
    max_tokens does not cut it (a cut answer would lose its references and disclaimer).
    What the assistant cannot do (n > 1, forced tool calls, JSON output, logprobs) is
    refused with a 400 rather than silently done otherwise."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False  # 0 or "yes" is a client error, not a guess
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = _number(0, 2)
    top_p: float | None = _number(0, 1)
    presence_penalty: float | None = _number(-2, 2)
    frequency_penalty: float | None = _number(-2, 2)
    seed: int | None = None
    stop: StrictStr | list[StrictStr] | None = Field(None, max_length=4)
    user: StrictStr | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None

    def unsupported(self) -> tuple[str, str] | None:
        """(parameter, message) for an option the assistant cannot honour, else None."""
        if self.n not in (None, 1):
            return "n", (f"n={self.n} is not supported: the assistant gives one answer per "
                         "question (send n=1 or leave it out)")
        if self.stream_options is not None and not self.stream:
            return "stream_options", "stream_options is only allowed when stream is true"
        if self.tool_choice == "required" or isinstance(self.tool_choice, NamedToolChoice):
            return "tool_choice", ("the assistant cannot call tools: it answers with cited "
                                   "evidence (leave tool_choice out, or send \"auto\" or "
                                   "\"none\")")
        if self.response_format is not None and self.response_format.type != "text":
            return "response_format", (f"response_format {self.response_format.type!r} is not "
                                       "supported: answers are Markdown text (use "
                                       "/v1/conversations for the structured answer as JSON)")
        if self.logprobs:
            return "logprobs", ("logprobs are not available: answers are quoted from "
                                "passages, not sampled")
        return None


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    """Tokens counted as OpenAI counts them for its chat models (cl100k_base; 3 per
    message and 3 to prime the reply), so that clients' budgets mean something."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, messages: list["ChatMessage"], completion: str) -> "Usage":
        prompt = 3 + sum(3 + _tokens(m.role) + _tokens(m.text()) for m in messages)
        done = _tokens(completion)
        return cls(prompt_tokens=prompt, completion_tokens=done, total_tokens=prompt + done)


@functools.cache
def _tokenizer():
    # llama-index points tiktoken at the cl100k_base file it ships: no download.
    from llama_index.core.utils import get_tokenizer

    return get_tokenizer()


def _tokens(text: str) -> int:
    return len(_tokenizer()(text)) if text else 0


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
REPLAYED = "Idempotent-Replayed"  # response header: this turn was stored by an earlier try

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


def _too_many(message: str, wait: float) -> HTTPException:
    seconds = math.ceil(wait)
    return HTTPException(429, f"{message}: retry in {seconds} s",
                         headers={"Retry-After": str(seconds)})


def caller(request: Request, service: Annotated[Service, Depends(get_service)],
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
           header_key: Annotated[str | None, Depends(key_header)]) -> str:
    """The owner of the request's conversations (a digest of its API key, or
    "anonymous" when the service has no keys), after authentication and rate limiting.
    Failed authentications are limited per client address, before the key is even
    compared, so keys cannot be guessed at speed; other addresses are not affected."""
    settings, limiter = service.settings, service.limiter
    address = request.client.host if request.client else "unknown"
    if settings.api_keys:
        failures = f"auth:{address}"
        wait = limiter.wait_s(failures, settings.auth_failures_per_minute, consume=False)
        if wait:
            raise _too_many(f"too many requests without a valid API key from this address "
                            f"(ASSISTANT_AUTH_FAILURES_PER_MINUTE="
                            f"{settings.auth_failures_per_minute})", wait)
        given = credentials.credentials if credentials else header_key
        valid = given is not None and any(
            secrets.compare_digest(given.encode("utf-8", "replace"),
                                   k.get_secret_value().encode("utf-8"))
            for k in settings.api_keys)
        if not valid:
            limiter.wait_s(failures, settings.auth_failures_per_minute)
            raise HTTPException(401, "a valid API key is required: send `Authorization: "
                                "Bearer KEY` or `X-API-Key: KEY`",
                                headers={"WWW-Authenticate": "Bearer"})
        owner = hashlib.sha256(given.encode("utf-8")).hexdigest()[:32]
        bucket = f"key:{owner}"
    else:
        owner, bucket = "anonymous", f"key:{address}"
    wait = limiter.wait_s(bucket, settings.rate_limit_per_minute)
    if wait:
        raise _too_many(f"rate limit of {settings.rate_limit_per_minute} requests per minute "
                        "exceeded (ASSISTANT_RATE_LIMIT_PER_MINUTE)", wait)
    return owner


ServiceDep = Annotated[Service, Depends(get_service)]
OwnerDep = Annotated[str, Depends(caller)]
ConversationId = Annotated[str, Path(max_length=64, description="the id returned when "
                                     "the conversation was started")]
IdempotencyHeader = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="any unique string (e.g. a UUID) of visible ASCII: a retry with the same "
    "key and question returns the turn already stored (header `Idempotent-Replayed: "
    "true`) instead of storing it twice; the same key with another question is a 422. "
    "Keys are remembered for ASSISTANT_IDEMPOTENCY_KEY_HOURS (24)")]


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


def _idempotency(service: Service, key: str | None, conversation_id: str | None,
                 question: str) -> IdempotencyKey | None:
    if key is None:
        return None
    asked = json.dumps([conversation_id, question], ensure_ascii=False)
    return IdempotencyKey(key, hashlib.sha256(asked.encode("utf-8")).hexdigest(),
                          service.settings.idempotency_key_hours * 3600)


def _replay(conversation_id: str, turn: StoredTurn, stream: bool):
    """The stored turn, as the first try would have answered it."""
    response = AskResponse(conversation_id=conversation_id, turn=_turn_out(turn))
    headers = {REPLAYED: "true"}
    if not stream:
        return JSONResponse(response.model_dump(mode="json"), 201, headers=headers)
    events = [_sse("delta", {"text": response.turn.markdown}),
              _sse("answer", response.model_dump(mode="json"))]
    return StreamingResponse(iter(events), media_type="text/event-stream",
                             headers={**_stream_headers(), **headers})


def _ask(service: Service, owner: str, conversation_id: str | None, question: str,
         stream: bool, idempotency_key: str | None = None):
    """Answer a question, new conversation (id None) or follow-up, and store the turn
    (once per idempotency key: a retry gets the stored turn back)."""
    idempotency = _idempotency(service, idempotency_key, conversation_id, question)
    if idempotency is not None:
        stored = service.store.replay(owner, idempotency)
        if stored is not None:
            return _replay(*stored, stream)
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
        """Write the turn; Replayed when a concurrent try with the same key wrote first."""
        if conversation_id is None:
            created = service.store.create(owner, answer.question, answer.model_dump_json(),
                                           idempotency)
            cid, turn = created.id, created.turns[0]
        else:
            cid = conversation_id
            turn = service.store.append(cid, owner, answer.question, answer.model_dump_json(),
                                        service.settings.max_turns_per_conversation,
                                        idempotency)
        _log_turn(service, cid, turn.position, answer)
        return AskResponse(conversation_id=cid, turn=_turn_out(turn, answer))

    if not stream:
        try:
            return store(service.assistant.ask(question, history))
        except Replayed as stored:
            return _replay(stored.conversation_id, stored.turn, stream=False)

    events = service.assistant.ask_stream(question, history)
    first = next(events)  # a bad question fails here, before the 200 is sent

    def body() -> Iterator[str]:
        try:
            for event in itertools.chain([first], events):
                if event["type"] == "delta":
                    yield _sse("delta", {"text": event["text"]})
                elif event["type"] == "answer":
                    try:
                        stored = store(event["answer"])
                    except Replayed as replayed:
                        stored = AskResponse(conversation_id=replayed.conversation_id,
                                             turn=_turn_out(replayed.turn))
                    yield _sse("answer", stored.model_dump(mode="json"))
        except ConversationNotFound:
            yield _sse("error", _error_json(404, "the conversation was deleted meanwhile"))
        except ConversationFull as exc:
            yield _sse("error", _error_json(409, str(exc)))
        except IdempotencyKeyReused as exc:
            yield _sse("error", _error_json(422, str(exc), "idempotency_key_reused",
                                            "Idempotency-Key"))
        except Exception:
            log.exception("streamed answer failed")
            yield _sse("error", _error_json(500, "internal error: the answer was not stored"))

    return StreamingResponse(body(), media_type="text/event-stream", headers=_stream_headers())


def _openai_history(assistant: Assistant, messages: list[ChatMessage]
                    ) -> tuple[str, list[Turn]]:
    """The last user message is the question; earlier user messages are the
    conversation, with the standalone query the assistant searched for each (rebuilt
    without a language model: cheap, and the same for every request). Every user message
    is held to the question length limit; the assistant's own messages only to the
    request size limit."""
    if messages[-1].role != "user":
        raise HTTPException(400, "the last message must be the user's question "
                            "(role \"user\")")
    limit = assistant.settings.max_question_chars
    for number, message in enumerate(messages):
        if message.role == "user" and len(message.text()) > limit:
            raise QuestionError(
                f"messages[{number}] is {len(message.text())} characters long; the limit "
                f"for a question is {limit} (ASSISTANT_MAX_QUESTION_CHARS): shorten it")
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
        # Several processes on one PostgreSQL share their buckets there.
        limiter = (SharedRateLimiter(store) if isinstance(store, PostgresStore)
                   else MemoryRateLimiter())
        app.state.service = Service(settings, assistant, store, limiter)
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
        errors = exc.errors()
        # A union (a message's content: text or parts) fails once per alternative: the
        # wrong-type failures only say which alternative was not taken.
        errors = [e for e in errors if not e["type"].endswith("_type")] or errors
        for error in errors:
            if error["type"] == "json_invalid":
                reason = error.get("ctx", {}).get("error", "")
                return JSONResponse(_error_json(400, f"the request body is not valid JSON: "
                                                f"{reason}", "json_invalid"), 400)
            # Leave out pydantic's own steps ("function-after[...]", "list[...]").
            where = ".".join(str(p) for p in error["loc"]
                             if p != "body" and "[" not in str(p)) or "body"
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
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

    @app.exception_handler(IdempotencyKeyReused)
    async def key_reused(request: Request, exc: IdempotencyKeyReused):
        return JSONResponse(_error_json(422, str(exc), "idempotency_key_reused",
                                        "Idempotency-Key"), 422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("internal error on %s %s: %s", request.method, request.url.path,
                  type(exc).__name__)
        # The server closes the connection after an unhandled error: say so, so that a
        # client does not send its next request on it.
        return JSONResponse(_error_json(500, "internal error"), 500,
                            headers={"Connection": "close"})

    # -- conversations --

    @app.post("/v1/conversations", status_code=201, response_model=AskResponse,
              tags=["conversations"], summary="Start a conversation with a question",
              responses={**COMMON_ERRORS, 200: ASK_STREAM})
    def start_conversation(body: AskRequest, service: ServiceDep, owner: OwnerDep,
                           idempotency_key: IdempotencyHeader = None):
        return _ask(service, owner, None, body.question, body.stream, idempotency_key)

    @app.post("/v1/conversations/{conversation_id}/turns", status_code=201,
              response_model=AskResponse, tags=["conversations"],
              summary="Ask a follow-up question in a conversation",
              responses={**COMMON_ERRORS, **_errors(404, 409),
                         200: ASK_STREAM})
    def follow_up(conversation_id: ConversationId, body: AskRequest, service: ServiceDep,
                  owner: OwnerDep, idempotency_key: IdempotencyHeader = None):
        return _ask(service, owner, conversation_id, body.question, body.stream,
                    idempotency_key)

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
        refused = body.unsupported()
        if refused is not None:
            return JSONResponse(_error_json(400, refused[1], "unsupported_parameter",
                                            refused[0]), 400)
        question, history = _openai_history(service.assistant, body.messages)
        limit = service.settings.max_turns_per_conversation
        if len(history) >= limit:
            raise ConversationFull(f"the conversation has more than {limit} user messages "
                                   "(ASSISTANT_MAX_TURNS_PER_CONVERSATION): start a new one")
        completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        if not body.stream:
            answer = service.assistant.ask(question, history)
            _log_turn(service, completion_id, len(history) + 1, answer)
            content = answer.to_markdown()
            return ChatCompletion(
                id=completion_id, created=created, model=MODEL_ID,
                choices=[ChatChoice(message=ChatCompletionMessage(content=content))],
                usage=Usage.of(body.messages, content))

        events = service.assistant.ask_stream(question, history)
        first = next(events)
        with_usage = body.stream_options is not None and body.stream_options.include_usage

        def chunk(delta: dict | None, finish: str | None = None,
                  usage: Usage | None = None) -> str:
            data = {"id": completion_id, "object": "chat.completion.chunk",
                    "created": created, "model": MODEL_ID,
                    "choices": [] if delta is None else [{"index": 0, "delta": delta,
                                                          "finish_reason": finish}]}
            if with_usage:  # null on every chunk but the last, as OpenAI sends it
                data["usage"] = usage.model_dump() if usage else None
            return _sse(None, data)

        def body_events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            sent = []
            try:
                for event in itertools.chain([first], events):
                    if event["type"] == "delta":
                        sent.append(event["text"])
                        yield chunk({"content": event["text"]})
                    elif event["type"] == "answer":
                        _log_turn(service, completion_id, len(history) + 1, event["answer"])
            except Exception:
                log.exception("streamed completion failed")
                yield _sse(None, _error_json(500, "internal error"))
                return
            yield chunk({}, "stop")
            if with_usage:
                yield chunk(None, usage=Usage.of(body.messages, "".join(sent)))
            yield "data: [DONE]\n\n"

        return StreamingResponse(body_events(), media_type="text/event-stream",
                                 headers=_stream_headers())

    @app.get("/v1/models", response_model=ModelList, tags=["openai"],
             summary="OpenAI-compatible model list", responses=_errors(401, 429))
    def models(service: ServiceDep, owner: OwnerDep):
        built = int(service.assistant.index.created())
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
