"""The model config file (``model_config.json``): validated, with every path confined to allowed roots.

The file is an object keyed by served model name. Errors name the model, the field and what is
allowed, and are raised before the engine starts, so a bad config fails fast with one clear line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inference_policy.engine import RESERVED_ENGINE_ARGS, path_engine_args, refused_engine_args
from inference_policy.model_source import (
    HF_SCHEME,
    ModelSource,
    SourceError,
    is_remote,
    model_dir,
    parse_model_uri,
)

MAX_CONFIG_BYTES = 1 << 20
MAX_TEMPLATE_BYTES = 256 << 10


class ConfigError(ValueError):
    """The config cannot be used; the message is meant for the operator of the server."""


class ModelConfig(BaseModel):
    """One entry of model_config.json."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    class_name: str = Field(
        "OpenAIServingChat", min_length=1, description="Registered serving class of the primary protocol."
    )
    model_path: str = Field(
        ...,
        min_length=1,
        description="HF model folder (a relative path resolves under the model root), or a remote source: "
        "hf://owner/name[@revision] or s3://bucket/prefix, downloaded into the model root.",
    )
    allow_patterns: list[str] | None = Field(
        None, max_length=64, description="hf:// only: glob patterns of the files to fetch; default: all."
    )
    max_model_len: int | None = Field(None, gt=0, description="Context length; default: the model's own.")
    chat_template: str | None = Field(
        None, description="Jinja template text or a file path; default: the model's own template."
    )
    response_role: str = Field("assistant", min_length=1, max_length=64, description="Role of replies.")
    dtype: Literal["auto", "bfloat16", "float16", "half", "float32", "float"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    engine_args: dict[str, Any] = Field(default_factory=dict, description="Further vLLM engine arguments.")
    openai_routes: bool = Field(True, description="Also serve OpenAI chat and completions routes.")
    extra_protocols: list[str] = Field(
        default_factory=list, max_length=32, description="Further registered serving classes to mount."
    )

    tool_call_parser: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Parser that finds tool calls in the model's text for tool_choice 'auto' (e.g. hermes).",
    )

    @field_validator("engine_args")
    @classmethod
    def _no_reserved_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(RESERVED_ENGINE_ARGS & value.keys())
        if clash:
            raise ValueError(f"set {', '.join(clash)} as top-level fields, not in engine_args")
        return value

    @model_validator(mode="after")
    def _patterns_need_a_hub_source(self) -> ModelConfig:
        if self.allow_patterns is not None and not self.model_path.startswith(HF_SCHEME):
            raise ValueError(f"allow_patterns applies only to a model_path starting with {HF_SCHEME}")
        return self


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A config entry whose paths were checked and resolved, ready for the engine."""

    name: str
    config: ModelConfig
    model_path: Path
    chat_template: str | None  # template text, or None for the model's own
    engine_args: dict[str, Any]  # engine_args with path-valued arguments resolved inside the roots
    source: ModelSource | None = None  # a remote model_path; model_path is then its folder in the cache


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """Where model files and templates may live. Everything else is refused."""

    model_root: Path
    config_dir: Path
    extra_roots: tuple[Path, ...] = ()

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(p.resolve() for p in (self.config_dir, self.model_root, *self.extra_roots))

    def resolve(self, raw: str, *, base: Path, where: str) -> Path:
        """Resolve ``raw`` (relative to ``base``), following symlinks, and require it inside a root."""
        if "\x00" in raw:
            raise ConfigError(f"{where}: contains a NUL byte")
        path = (base / Path(raw).expanduser()).resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(str(r) for r in self.roots)
            raise ConfigError(
                f"{where}: '{raw}' resolves outside the allowed roots ({allowed}); "
                "add its folder with --allowed-root if it is meant to be served"
            )
        return path


def load_model_config(
    path: Path, model_name: str, policy: PathPolicy, allowed_engine_args: frozenset[str] = frozenset()
) -> ResolvedModel:
    """Read ``path``, pick ``model_name``, validate it and resolve its paths.

    Engine arguments that load code are refused unless named in ``allowed_engine_args`` (an allowed
    path-valued argument is passed as written, unchecked).
    """
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read model config {path}: {exc.strerror}") from exc
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise ConfigError(f"model config {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        document = json.loads(raw_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"model config {path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"model config {path} must be a JSON object keyed by model name")
    if model_name not in document:
        known = ", ".join(sorted(map(str, document))) or "none"
        raise ConfigError(f"model '{model_name}' is not in {path}; models there: {known}")
    try:
        entry = ModelConfig.model_validate(document[model_name])
    except ValidationError as exc:
        raise ConfigError(_describe(model_name, exc)) from exc
    return _resolve(model_name, entry, policy, allowed_engine_args)


def _describe(model_name: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "(entry)"
        problems.append(f"field '{field}': {err['msg']}")
    return f"model '{model_name}': " + "; ".join(problems)


def _resolve(name: str, entry: ModelConfig, policy: PathPolicy, allowed: frozenset[str]) -> ResolvedModel:
    refused = refused_engine_args(entry.engine_args, allowed)
    if refused:
        raise ConfigError(
            f"model '{name}': field 'engine_args': {'; '.join(refused)}; "
            "pass --allow-engine-arg NAME to allow one"
        )
    engine_args = dict(entry.engine_args)
    for arg, raw in path_engine_args(entry.engine_args, allowed).items():
        where = f"model '{name}': engine_args.{arg}"
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: must be a path")
        engine_args[arg] = str(policy.resolve(raw, base=policy.model_root, where=where))
    source = None
    if is_remote(entry.model_path):
        try:
            source = source_from_env(entry.model_path, tuple(entry.allow_patterns or ()), os.environ)
        except SourceError as exc:
            raise ConfigError(f"model '{name}': model_path: {exc}") from None
        # Not there yet, maybe: the CLI downloads it before the engine starts.
        model_path = model_dir(policy.model_root.resolve(), source)
    else:
        where = f"model '{name}': model_path"
        model_path = policy.resolve(entry.model_path, base=policy.model_root, where=where)
        if not model_path.is_dir():
            raise ConfigError(f"model '{name}': model_path '{entry.model_path}' is not a folder")
    template = None
    if entry.chat_template is not None:
        template = _template_text(name, entry.chat_template, policy)
    return ResolvedModel(
        name=name,
        config=entry,
        model_path=model_path,
        chat_template=template,
        engine_args=engine_args,
        source=source,
    )


def source_from_env(uri: str, patterns: tuple[str, ...], env: Mapping[str, str]) -> ModelSource:
    """Parse a remote ``model_path`` with the endpoints and region of the standard environment variables.

    They are part of the source (and so of its cache folder): two stores may hold same-named models.
    """
    return parse_model_uri(
        uri,
        patterns=patterns,
        hf_endpoint=env.get("HF_ENDPOINT") or None,
        s3_endpoint=env.get("AWS_ENDPOINT_URL") or None,
        s3_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
    )


def _template_text(name: str, value: str, policy: PathPolicy) -> str:
    """A value with Jinja markup is the template itself; anything else is a file path."""
    if "{{" in value or "{%" in value:
        return value
    where = f"model '{name}': chat_template"
    path = policy.resolve(value, base=policy.config_dir, where=where)
    if not path.is_file():
        raise ConfigError(f"{where}: '{value}' is not a file")
    if path.stat().st_size > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"{where}: '{value}' is larger than {MAX_TEMPLATE_BYTES} bytes")
    return path.read_text(encoding="utf-8")
