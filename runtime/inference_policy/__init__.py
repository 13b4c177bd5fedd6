"""What a model config or an InferenceModel may ask the engine to do: one list, read by both packages.

Dependency-free on purpose: the runtime checks it before vLLM is imported, and the operator (whose image
has neither vLLM nor the runtime) checks ``spec.engineArgs`` and ``spec.env`` against the same data.
"""
