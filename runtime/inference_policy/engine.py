"""Engine arguments and environment variables that make vLLM load code, and the checks that refuse them.

The lists are data, judged by reading vLLM 0.32's ``EngineArgs`` (vllm/engine/arg_utils.py), the config
classes it builds and ``vllm/envs.py``. tests/runtime/test_engine_policy.py walks the installed vLLM and
fails when a field or variable that looks as if it loads code (its name or type, the heuristics are
documented there) is in none of them, so an upgrade cannot open a hole unnoticed.

Names with a dot (``compilation_config.backend``) are keys inside an argument whose value is an object.
Trusted, and not judged here: the Python packages installed in the image. vLLM loads every installed
``vllm.general_plugins`` entry point when ``VLLM_PLUGINS`` is unset (the runtime's own AMX plugin is one);
whoever builds the image decides what is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Engine arguments the model config has first-class fields for (the runtime sets them on the engine):
# setting them through engine_args / spec.engineArgs would silently disagree with the rest of the config.
RESERVED_ENGINE_ARGS = frozenset(
    {"model", "served_model_name", "max_model_len", "dtype", "tensor_parallel_size", "gpu_memory_utilization"}
)

# Values that ask for nothing: an absent option, an empty list or object, false.
_EMPTY: tuple[Any, ...] = (None, "", [], {}, False)


@dataclass(frozen=True, slots=True)
class Refused:
    """An argument that loads code; refused unless its value is one of ``harmless`` (the built-ins)."""

    why: str
    harmless: tuple[Any, ...] = _EMPTY


# Engine arguments whose value names code to import (a dotted path, a class, a plugin, a file), runs code
# shipped with the model, or writes/reads files the path rules below cannot see.
CODE_LOADING_ENGINE_ARGS: Mapping[str, Refused] = {
    "trust_remote_code": Refused("runs Python shipped in the model folder"),
    "worker_cls": Refused("imports a worker class by dotted path", ("auto", *_EMPTY)),
    "worker_extension_cls": Refused("imports a class by dotted path into every worker"),
    "scheduler_cls": Refused("imports a scheduler class by dotted path"),
    "distributed_executor_backend": Refused(
        "imports an executor class by dotted path", ("mp", "uni", "ray", "external_launcher", *_EMPTY)
    ),
    "logits_processors": Refused("imports logits processor classes by '<module>:<class>'"),
    "model_class_overrides": Refused("maps architectures to model classes imported by dotted path"),
    "hf_overrides": Refused("rewrites the model's config, including its architectures and auto_map"),
    "reasoning_parser_plugin": Refused("imports a Python file as a reasoning parser"),
    "io_processor_plugin": Refused("loads an IO processor plugin by name"),
    "model_loader_extra_config": Refused("loader-specific options (deserializers, remote sources)"),
    "speculative_config": Refused("its method 'custom_class' imports its model as a dotted path"),
    "spec_model": Refused("a draft model path or, with method 'custom_class', a dotted path to import"),
    "default_mm_loras": Refused("loads LoRA adapters from paths the root rules do not check"),
    "log_config_file": Refused("a logging config file, which can instantiate any importable class"),
    "logging_config": Refused("its pylogging_config_file can instantiate any importable class"),
    "kv_transfer_config": Refused("its kv_connector_module_path imports a module"),
    "ec_transfer_config": Refused("its ec_connector_module_path imports a module"),
    "ec_manager_config": Refused("its encoder_cache_manager_cls imports a class by dotted path"),
    "weight_transfer_config": Refused("weight transfer backends can import a module by path"),
    "profiler_config": Refused("writes traces to folders the root rules do not check"),
    "compilation_config.backend": Refused("a compile backend imported by dotted path"),
    "compilation_config.inductor_passes": Refused("inductor passes imported by dotted path"),
    "compilation_config.inductor_compile_config": Refused("raw inductor settings, including pass hooks"),
    "compilation_config.cache_dir": Refused("writes compiled code to a folder the root rules do not check"),
    "compilation_config.local_cache_dir": Refused("compiled code is loaded back from this folder"),
    "compilation_config.debug_dump_path": Refused("writes to a folder the root rules do not check"),
    "structured_outputs_config.reasoning_parser_plugin": Refused("imports a Python file as a parser"),
}

# Engine arguments whose value is a local path: it must resolve inside the runtime's allowed roots
# (relative paths resolve under the model root). The values listed are keywords, not paths.
PATH_ENGINE_ARGS: Mapping[str, tuple[str, ...]] = {
    "tokenizer": (),
    "hf_config_path": (),
    "download_dir": (),
    "model_weights": (),
    "allowed_local_media_path": (),
    "mm_encoder_fp8_scale_path": (),
    "mm_encoder_fp8_scale_save_path": (),
    "generation_config": ("auto", "vllm"),
}

# Engine arguments and sub-keys the heuristics of the test flag, read and judged not to load code.
JUDGED_SAFE_ENGINE_ARGS: Mapping[str, str] = {
    # Kernel and backend choices: names looked up in vLLM's own registries or Literal enums.
    **dict.fromkeys(
        (
            "all2all_backend",
            "attention_backend",
            "attention_config",
            "attention_config.backend",
            "attention_config.backend_per_kind",
            "attention_config.minimax_m3_msa_decode_backend",
            "attention_config.mla_prefill_backend",
            "data_parallel_backend",
            "dcp_comm_backend",
            "gdn_prefill_backend",
            "kda_decode_backend",
            "kda_prefill_backend",
            "kernel_config",
            "kernel_config.ir_op_priority",
            "kernel_config.linear_backend",
            "kernel_config.linear_backend_per_quant",
            "kernel_config.moe_backend",
            "kernel_config.sparse_indexer_topk_backend",
            "kv_offloading_backend",
            "linear_backend",
            "mamba_backend",
            "mamba_config",
            "mamba_config.backend",
            "mm_encoder_attn_backend",
            "moe_backend",
            "offload_backend",
            "sparse_indexer_topk_backend",
            "ir_op_priority",
            "structured_outputs_config.backend",
            "mm_processor_device",
            "pt_load_map_location",
        ),
        "a name from vLLM's own registry or a fixed set of choices",
    ),
    # Parsers and formats chosen by name among the built-in (installed) ones.
    **dict.fromkeys(
        (
            "reasoning_parser",
            "reasoning_config",
            "reasoning_config.reasoning_parser",
            "structured_outputs_config",
            "structured_outputs_config.reasoning_parser",
            "config_format",
            "load_format",
            "model_impl",
            "spec_method",
            "video_pruning_method",
            "compilation_config.compile_cache_save_format",
            "mm_processor_cache_type",
        ),
        "a name among installed implementations (pickled weights load with weights_only=True; "
        "spec_method 'custom_class' needs spec_model or speculative_config, both refused)",
    ),
    # Settings objects made of numbers, booleans and choices only.
    **dict.fromkeys(
        (
            "aux_output_config",
            "compilation_config",
            "compilation_config.pass_config",
            "compilation_config.dynamic_shapes_config",
            "attention_config.hisparse_config",
            "diffusion_config",
            "engram_config",
            "eplb_config",
            "fault_tolerance_config",
            "watermark_config",
            "quantization_config",
            "pooler_config",
            "custom_histogram_buckets",
            "limit_mm_per_prompt",
            "override_generation_config",
            "kv_events_config",
        ),
        "numbers, booleans, choices (pooler activations are limited to torch.nn.modules by vLLM; "
        "compilation_config's code-loading keys are refused one by one)",
    ),
    **dict.fromkeys(
        ("compilation_config.static_forward_context", "compilation_config.traced_files"),
        "vLLM's internal bookkeeping, filled during compilation",
    ),
    **dict.fromkeys(
        ("mm_processor_kwargs", "media_io_kwargs", "additional_config"),
        "keyword arguments passed to installed processors and platforms; no names are imported",
    ),
    **dict.fromkeys(
        (
            "lora_target_modules",
            "max_lora_cls_labels",
            "enable_mixed_moe_lora_format",
            "enable_mm_processor_stats",
            "mm_processor_cache_gb",
        ),
        "the name matched a heuristic word, the value is a number, a flag or layer names",
    ),
}

# Environment variables that act when the interpreter or the dynamic loader starts a process: set, they
# have done their work before the runtime's first line runs, so the runtime cannot refuse them; only
# whoever sets the process's environment can keep them out (the operator refuses them, and every other
# LD_* and PYTHON* variable, in an InferenceModel's env).
PROCESS_START_ENV: Mapping[str, str] = {
    "LD_PRELOAD": "the dynamic loader loads these libraries into every process",
    "LD_AUDIT": "the dynamic loader loads these auditing libraries",
    "LD_LIBRARY_PATH": "the dynamic loader searches these folders first",
    "PYTHONPATH": "Python imports from these folders first",
    "PYTHONHOME": "Python takes its standard library from this folder",
    "PYTHONSTARTUP": "Python runs this file (interactive sessions)",
    "PYTHONUSERBASE": "Python imports user site-packages from this folder",
    "PYTHONWARNINGS": "warning filters import their category by dotted path",
    "PYTHONPLATLIBDIR": "Python takes its platform library folder from this",
    "PYTHONEXECUTABLE": "spawned processes run this interpreter",
}

# Environment variables read later, by vLLM, torch or Python, to load code: the runtime refuses to
# start while one is set (unless allowed by name), and an InferenceModel's env may not set them.
CODE_LOADING_ENV: Mapping[str, str] = {
    "PYTHONBREAKPOINT": "breakpoint() imports this dotted path",
    "CC": "torch's compiler builds and loads C++ with this program",
    "CXX": "torch's compiler builds and loads C++ with this program",
    "VLLM_PLUGINS": "chooses which installed vLLM plugins load (the runtime's own included)",
    "VLLM_NCCL_SO_PATH": "vLLM loads this shared library",
    "VLLM_CUDART_SO_PATH": "vLLM loads this shared library",
    "VLLM_CUDA_COMPATIBILITY_PATH": "vLLM loads CUDA libraries from this folder",
    "VLLM_NCCL_INCLUDE_PATH": "vLLM compiles code against headers from this folder",
    "VLLM_LOGGING_CONFIG_PATH": "a logging config file, which can instantiate any importable class",
    "VLLM_RUST_FRONTEND_PATH": "vLLM runs this program",
    "VLLM_ALLOW_INSECURE_SERIALIZATION": "engine processes unpickle messages (pickle runs code)",
    "VLLM_MODEL_REDIRECT_PATH": "redirects model names to paths the root rules do not check",
    "VLLM_XLA_CACHE_PATH": "compiled XLA programs are loaded back from this folder",
}

# Environment variables read by vLLM that the test's heuristics flag, read and judged not to load code.
JUDGED_SAFE_ENV: Mapping[str, str] = {
    "VLLM_RPC_BASE_PATH": "the folder of the engine's sockets; the runtime sets it itself",
    "VLLM_DEBUG_DUMP_PATH": "debug dumps are written, never read back",
    "VLLM_USE_BYTECODE_HOOK": "switches vLLM's own bytecode hook on or off",
    "VLLM_VIDEO_LOADER_BACKEND": "a name from vLLM's video loader registry",
    "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "a flag for media downloads (the runtime takes no media)",
}

# What an InferenceModel's env may not set besides the two lists above: the image sets some of these
# itself (PYTHONUNBUFFERED, PATH), but a spec has no business changing them.
SPEC_REFUSED_ENV_PREFIXES = ("LD_", "PYTHON")
SPEC_REFUSED_ENV: Mapping[str, str] = {
    "PATH": "it decides which compiler torch runs",
    "ALLOWED_ROOTS": "it widens the folders the runtime reads model files from",
}


def _get(args: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """The value of ``name`` (``outer.inner`` looks inside an object value), and whether it is set."""
    outer, _, inner = name.partition(".")
    if outer not in args:
        return False, None
    if not inner:
        return True, args[outer]
    value = args[outer]
    if isinstance(value, Mapping) and inner in value:
        return True, value[inner]
    return False, None


def refused_engine_args(args: Mapping[str, Any], allowed: frozenset[str] = frozenset()) -> list[str]:
    """The code-loading arguments ``args`` sets (not ``allowed``), each as ``'name': why``, sorted."""
    problems = []
    for name, rule in sorted(CODE_LOADING_ENGINE_ARGS.items()):
        present, value = _get(args, name)
        if present and name not in allowed and not any(_same(value, h) for h in rule.harmless):
            problems.append(f"'{name}' {rule.why}")
    return problems


def _same(value: Any, harmless: Any) -> bool:
    return type(value) is type(harmless) and value == harmless


def path_engine_args(args: Mapping[str, Any], allowed: frozenset[str] = frozenset()) -> dict[str, str]:
    """The path-valued arguments ``args`` sets (not ``allowed``, not a keyword), by name."""
    paths: dict[str, str] = {}
    for name, keywords in sorted(PATH_ENGINE_ARGS.items()):
        value = args.get(name)
        if name in allowed or value is None or value in keywords:
            continue
        paths[name] = value
    return paths


def refused_env(environ: Mapping[str, str], allowed: frozenset[str] = frozenset()) -> list[str]:
    """The code-loading variables set in ``environ`` (not ``allowed``), each as ``NAME (why)``, sorted."""
    return [
        f"{name} ({why})"
        for name, why in sorted(CODE_LOADING_ENV.items())
        if name in environ and name not in allowed
    ]


def refused_in_spec_env(name: str) -> str | None:
    """Why an InferenceModel may not set the environment variable ``name``; None when it may."""
    for rules in (CODE_LOADING_ENV, PROCESS_START_ENV, SPEC_REFUSED_ENV):
        if name in rules:
            return rules[name]
    if name.startswith(SPEC_REFUSED_ENV_PREFIXES):
        return "it changes how the interpreter or the dynamic loader find code"
    return None
