"""JSON schemas for forced tool calls, and the checks that make a call valid.

A forced call is decoded under a schema (the engine's structured output), so its text is JSON of the
right shape by construction. The shapes follow vLLM's own server (``get_json_schema_from_tools``):

- named function: the function's ``parameters`` themselves; the output is the arguments object.
- ``"required"``: ``[{"name": N, "parameters": P}, ...]`` with one ``anyOf`` branch per tool, at least one
  item (at most one with ``parallel_tool_calls: false``); each tool's ``$defs`` are hoisted to the root,
  where its ``#/$defs/...`` references then resolve, and two tools defining one name differently are
  refused (400), as a merged schema could not honour both.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

from inference_runtime.errors import InvalidRequest
from inference_runtime.tools.protocol import ToolDefinition

EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}
DEFS_KEYS = ("$defs", "definitions")


def parameters_schema(tool: ToolDefinition) -> dict[str, Any]:
    """The schema the arguments of ``tool`` must validate against (an empty object when none given)."""
    params = tool.function.parameters
    if not params:
        return EMPTY_OBJECT
    return params if "type" in params else {"type": "object", **params}


def check_tools(tools: list[ToolDefinition]) -> None:
    """400 naming the field for a duplicate name, an invalid JSON schema or a schema of no object."""
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.function.name
        if name in seen:
            raise InvalidRequest(f"Two tools are named '{name}'.", param=f"tools.{i}.function.name")
        seen.add(name)
        schema = parameters_schema(tool)
        where = f"tools.{i}.function.parameters"
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            path = "/".join(str(p) for p in exc.path) or "(root)"
            raise InvalidRequest(
                f"The parameters of tool '{name}' are not a valid JSON schema at {path}: {exc.message}"[:500],
                param=where,
            ) from None
        if schema.get("type") != "object":
            raise InvalidRequest(
                f"The parameters of tool '{name}' must describe a JSON object (type 'object').", param=where
            )


def required_schema(tools: list[ToolDefinition], *, parallel: bool) -> dict[str, Any]:
    branches = []
    hoisted: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        params = copy.deepcopy(parameters_schema(tool))
        for key in DEFS_KEYS:
            defs = params.pop(key, None)
            if defs is None:
                continue
            if not isinstance(defs, dict):
                raise InvalidRequest(f"'{key}' must be an object.", param=f"tools.{i}.function.parameters")
            table = hoisted.setdefault(key, {})
            for def_name, def_schema in defs.items():
                if def_name in table and table[def_name] != def_schema:
                    raise InvalidRequest(
                        f"Tools define '{key}/{def_name}' with different schemas; "
                        "rename one so that tool_choice 'required' can offer both.",
                        param=f"tools.{i}.function.parameters",
                    )
                table[def_name] = def_schema
        branches.append(
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": [tool.function.name]},
                    "parameters": params,
                },
                "required": ["name", "parameters"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": branches}}
    if not parallel:
        schema["maxItems"] = 1
    schema.update(hoisted)
    return schema


def arguments_valid(tool: ToolDefinition, arguments: Any) -> bool:
    """Whether decoded arguments validate against the tool's schema.

    Constrained decoding should make this always true; it is checked anyway because a grammar
    backend may not enforce every keyword (``format``, say), and a call is only returned as valid
    when it is.
    """
    schema = parameters_schema(tool)
    return jsonschema.validators.validator_for(schema)(schema).is_valid(arguments)
