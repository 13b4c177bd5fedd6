"""OpenAI tool calling for every protocol: wire fields, schemas for forced calls, parsers, streaming.

A protocol whose request model mixes in :class:`~inference_runtime.tools.protocol.ToolFields` gets tool
support from :class:`~inference_runtime.serving.base.BaseServingEngine` (the ``tool_plan`` hook); it never
re-implements schema building, constrained decoding, parsing or the streamed ``tool_calls`` deltas.
Nothing here imports the engine: parsers shipped by vLLM are reached through the engine adapter.
"""
