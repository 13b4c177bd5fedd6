"""OpenAI (legacy) Completions."""
