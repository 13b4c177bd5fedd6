"""``POST /tokenize`` and ``POST /detokenize`` with the request and response shapes of vLLM's server.

Text (or chat messages, rendered with the chat template and its ``tools=``) in, token ids out; token
ids in, text out. Behind the API keys like every route but the probes; errors in the OpenAI envelope.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from inference_runtime.deps import StateDep, require_key
from inference_runtime.engine_api import EngineClient
from inference_runtime.errors import InvalidRequest, ModelNotFound, Unavailable
from inference_runtime.protocols.chat.protocol import ChatMessage, template_messages
from inference_runtime.serving.chat_template import render_chat
from inference_runtime.serving.http import read_body, validation_message
from inference_runtime.state import RuntimeState
from inference_runtime.tools.protocol import ToolDefinition
from inference_runtime.tools.schema import check_tools

router = APIRouter(tags=["tokenizer"], dependencies=[Depends(require_key)])
TokenId = Annotated[int, Field(ge=0, lt=2**63)]


class TokenizeCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model: str | None = None
    prompt: str
    add_special_tokens: bool = Field(True, description="add the tokenizer's special tokens (e.g. BOS)")
    return_token_strs: bool = False


class TokenizeChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = Field(False, description="special tokens on top of the chat template's")
    return_token_strs: bool = False
    tools: list[ToolDefinition] | None = Field(None, max_length=128)


TokenizeRequest = TokenizeCompletionRequest | TokenizeChatRequest


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model: str | None = None
    tokens: list[TokenId]


class DetokenizeResponse(BaseModel):
    prompt: str


# For the OpenAPI schema; requests are parsed by _parse.
_TOKENIZE = TypeAdapter(TokenizeRequest)
_DETOKENIZE = TypeAdapter(DetokenizeRequest)


def _body_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The request body in the OpenAPI schema (its ``$defs`` become components, as for protocols)."""
    schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "x-defs": defs,
    }


async def _parse(raw_request: Request, state: RuntimeState, models: tuple[type[BaseModel], ...]) -> Any:
    """The body as the first of ``models`` whose required field it carries (else the last), so a 400
    names the field of the shape the client meant, not of every member of a union."""
    body = await read_body(raw_request, state.settings.limits.max_body_bytes)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    model = next((m for m in models if isinstance(data, dict) and _required(m) <= data.keys()), models[-1])
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise InvalidRequest(message, param=param) from None
    if request.model is not None and request.model != state.model.name:
        raise ModelNotFound(request.model)
    return request


def _required(model: type[BaseModel]) -> set[str]:
    return {name for name, f in model.model_fields.items() if f.is_required()}


def _engine(state: RuntimeState) -> EngineClient:
    if state.engine is None:
        raise Unavailable(
            "The model is loading; retry when /ready answers 200.", headers={"Retry-After": "5"}
        )
    return state.engine


@router.post(
    "/tokenize",
    summary="Token ids of a text prompt or of chat messages (vLLM's shape).",
    response_model=TokenizeResponse,
    openapi_extra=_body_schema(_TOKENIZE),
)
async def tokenize(raw_request: Request, state: StateDep) -> TokenizeResponse:
    request = await _parse(raw_request, state, (TokenizeChatRequest, TokenizeCompletionRequest))
    engine = _engine(state)
    if isinstance(request, TokenizeChatRequest):
        if request.continue_final_message and request.add_generation_prompt:
            raise InvalidRequest(
                "continue_final_message and add_generation_prompt cannot both be true.",
                param="continue_final_message",
            )
        if request.tools:
            check_tools(request.tools)
        tools = [t.model_dump(exclude_none=True) for t in request.tools or ()]
        text = render_chat(
            engine.tokenizer,
            state.model.chat_template,
            template_messages(request.messages),
            request.add_generation_prompt,
            tools,
            continue_final_message=request.continue_final_message,
        )
    else:
        text = request.prompt
    tokens = list(engine.tokenizer.encode(text, add_special_tokens=request.add_special_tokens))
    token_strs = None
    if request.return_token_strs:
        token_strs = engine.tokenizer.convert_ids_to_tokens(tokens)
    return TokenizeResponse(
        count=len(tokens), max_model_len=engine.max_model_len, tokens=tokens, token_strs=token_strs
    )


@router.post(
    "/detokenize",
    summary="The text of token ids (vLLM's shape).",
    response_model=DetokenizeResponse,
    openapi_extra=_body_schema(_DETOKENIZE),
)
async def detokenize(raw_request: Request, state: StateDep) -> DetokenizeResponse:
    request = await _parse(raw_request, state, (DetokenizeRequest,))
    engine = _engine(state)
    try:
        prompt = engine.tokenizer.decode(request.tokens, skip_special_tokens=False)
    except (OverflowError, IndexError, TypeError, ValueError):
        raise InvalidRequest("The tokens are not ids of this model's vocabulary.", param="tokens") from None
    return DetokenizeResponse(prompt=prompt)
