"""Wire pieces only the OpenAI protocols (chat and legacy completions) use."""
