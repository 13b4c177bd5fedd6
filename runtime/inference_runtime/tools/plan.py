"""How one request uses its tools: the mode, the decoding constraint, and the calls found in the output."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from inference_runtime.engine_api import ToolCallParser, ToolParserFactory
from inference_runtime.errors import InvalidRequest
from inference_runtime.generation import SamplingSpec
from inference_runtime.tools.protocol import (
    FunctionCall,
    NamedToolChoice,
    ToolCall,
    ToolDefinition,
    ToolFields,
)
from inference_runtime.tools.schema import arguments_valid, check_tools, parameters_schema, required_schema

logger = logging.getLogger(__name__)
Mode = Literal["none", "auto", "required", "named"]
TOOL_CALLS = "tool_calls"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(slots=True)
class ToolResult:
    """One choice after tool extraction: its text outside calls, its calls, its finish reason."""

    content: str | None
    calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass(slots=True)
class ToolPlan:
    tools: list[ToolDefinition]
    mode: Mode
    parallel: bool = True
    named: ToolDefinition | None = None
    schema: dict[str, Any] | None = None  # forced modes: what the output is decoded under
    parser: ToolCallParser | None = None  # "auto" only, when the model config names a parser

    @property
    def template_tools(self) -> list[dict[str, Any]]:
        """The tools as the chat template receives them (``tools=``)."""
        return [t.model_dump(exclude_none=True) for t in self.tools]

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "named")

    @property
    def extracts(self) -> bool:
        """Whether output is parsed for calls (and held back while streaming until it is complete)."""
        return self.forced or self.parser is not None

    @property
    def text_only(self) -> bool:
        """Mode "auto" with no parser configured: the answer is returned as text, never parsed."""
        return self.mode == "auto" and self.parser is None

    def constrain(self, spec: SamplingSpec) -> None:
        """Forced modes decode under the tools' schema (replacing any response_format, as vLLM does),
        as compact JSON: arguments are re-serialised anyway, and whitespace only costs tokens."""
        if self.schema is not None:
            spec.json_object, spec.regex, spec.choice = False, None, None
            spec.json_schema, spec.compact_json = self.schema, True
        elif self.parser is not None and self.parser.keeps_special_tokens:
            spec.skip_special_tokens = False

    def finish(self, text: str, finish_reason: str | None) -> ToolResult:
        """The calls in one choice's complete text.

        A forced call that does not parse and validate (max_tokens cut it short) is not returned as a
        call: the text stays in ``content`` with the engine's finish reason (``length``).
        """
        if self.forced:
            calls = self._forced_calls(text)
            if calls is None:
                return ToolResult(content=text, finish_reason=finish_reason)
            return ToolResult(content=None, calls=calls, finish_reason=TOOL_CALLS)
        if self.parser is None:
            return ToolResult(content=text, finish_reason=finish_reason)
        parsed = self.parser.parse(text)
        if not parsed.calls:
            return ToolResult(content=text, finish_reason=finish_reason)
        found = parsed.calls if self.parallel else parsed.calls[:1]
        calls = [ToolCall(id=new_call_id(), function=FunctionCall(name=n, arguments=a)) for n, a in found]
        return ToolResult(content=parsed.content or None, calls=calls, finish_reason=TOOL_CALLS)

    def _forced_calls(self, text: str) -> list[ToolCall] | None:
        try:
            # strict=False: a raw control character inside a string (a byte-level token can decode to
            # one) is kept; the arguments are re-serialised, escaped, below.
            decoded = json.loads(text, strict=False)
        except ValueError:
            return None
        if self.named is not None:
            pairs = [(self.named.function.name, decoded)]
        elif isinstance(decoded, list) and decoded and all(isinstance(d, dict) for d in decoded):
            pairs = [(d.get("name"), d.get("parameters")) for d in decoded]
        else:
            return None
        by_name = {t.function.name: t for t in self.tools}
        calls = []
        for name, arguments in pairs:
            tool = by_name.get(name) if isinstance(name, str) else None
            if tool is None or not isinstance(arguments, dict) or not arguments_valid(tool, arguments):
                logger.warning("a forced tool call did not validate against its schema: %.200s", text)
                return None
            calls.append(
                ToolCall(
                    id=new_call_id(),
                    function=FunctionCall(name=name, arguments=json.dumps(arguments, ensure_ascii=False)),
                )
            )
        return calls if (self.parallel or len(calls) == 1) else None


def plan_tools(fields: ToolFields, parser_factory: ToolParserFactory | None) -> ToolPlan | None:
    """Check the tool fields of a request (400 naming the field) and decide how tools are used."""
    choice = fields.tool_choice
    if not fields.tools:
        if choice is not None:
            raise InvalidRequest("tool_choice is only allowed when tools are given.", param="tool_choice")
        return None
    tools = fields.tools
    check_tools(tools)
    parallel = fields.parallel_tool_calls is not False
    if isinstance(choice, NamedToolChoice):
        named = next((t for t in tools if t.function.name == choice.function.name), None)
        if named is None:
            raise InvalidRequest(
                f"tool_choice names the function '{choice.function.name[:64]}', which is not in tools.",
                param="tool_choice.function.name",
            )
        return ToolPlan(
            tools=tools, mode="named", parallel=parallel, named=named, schema=parameters_schema(named)
        )
    mode: Mode = choice or "auto"
    plan = ToolPlan(tools=tools, mode=mode, parallel=parallel)
    if mode == "required":
        plan.schema = required_schema(tools, parallel=parallel)
    if mode == "auto" and parser_factory is not None:
        plan.parser = parser_factory(plan.template_tools)
    return plan
