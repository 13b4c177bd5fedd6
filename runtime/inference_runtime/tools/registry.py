"""Tool-call parsers by name: the engine's own (vLLM ships hermes, llama3_json, pythonic, ...), then
plugins registered under the entry-point group ``inference_runtime.tool_parsers``.

A plugin's entry point names a callable ``(tokenizer, tools) -> ToolCallParser`` (usually a class whose
instances have ``keeps_special_tokens`` and ``parse(text)``; see engine_api). As with serving classes,
only registered names load, nothing is imported from a path written in a config file, and an engine
parser's name cannot be taken over by a plugin.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from inference_runtime.config import ConfigError
from inference_runtime.engine_api import EngineClient, ToolCallParser, ToolParserFactory
from inference_runtime.serving.registry import import_target

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "inference_runtime.tool_parsers"


def registered() -> dict[str, str]:
    """Plugin parser names -> ``module:attribute`` targets."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_tool_parser(name: str, engine: EngineClient) -> ToolParserFactory:
    """The factory of parser ``name`` for this engine's tokenizer; ConfigError naming the field otherwise."""
    where = f"tool_call_parser '{name[:100]}'"
    table = registered()
    try:
        builtin = engine.tool_parser(name)
    except ValueError as exc:
        raise ConfigError(f"{where} cannot be used with this model: {exc}") from exc
    if builtin is not None:
        if name in table:
            logger.warning(
                "tool parser plugin %s=%s ignored: the engine has a parser of that name", name, table[name]
            )
        return builtin
    if name not in table:
        plugins = ", ".join(sorted(table)) or "none"
        raise ConfigError(
            f"{where} is neither a parser of the engine nor a registered plugin (plugins: {plugins})"
        )
    make = import_target(table[name], where)
    if not callable(make):
        raise ConfigError(f"{where} is registered as {table[name]}, which is not callable")
    tokenizer = engine.tokenizer

    def factory(tools: list[dict[str, Any]]) -> ToolCallParser:
        return make(tokenizer, tools)

    return factory
