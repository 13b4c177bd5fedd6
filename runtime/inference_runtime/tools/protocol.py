"""Wire models of OpenAI tool calling: tool definitions, ``tool_choice`` and the calls in messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    from inference_runtime.tools.plan import ToolPlan

# OpenAI's rule for function names; it also keeps names safe inside schemas, templates and logs.
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(..., pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="JSON Schema of the arguments (an object)")
    strict: bool | None = None


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(..., description="the arguments as a serialized JSON object")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(..., min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ToolFields(BaseModel):
    """Request fields of tool calling; mix into a protocol's request model to get tool support."""

    tools: list[ToolDefinition] | None = Field(None, max_length=128)
    tool_choice: ToolChoice | None = Field(
        None, description="default: 'auto' when tools are given, else 'none'"
    )
    parallel_tool_calls: bool | None = Field(None, description="false: at most one call (default true)")
    # The plan is made once per request (BaseServingEngine.tool_plan) and kept here, beside its fields.
    _plan_made: bool = PrivateAttr(False)
    _plan: ToolPlan | None = PrivateAttr(None)

    @property
    def tool_plan_made(self) -> bool:
        return self._plan_made

    @property
    def remembered_tool_plan(self) -> ToolPlan | None:
        return self._plan

    def remember_tool_plan(self, plan: ToolPlan | None) -> None:
        self._plan, self._plan_made = plan, True
