"""Built-in protocols: each a wire model (protocol.py) and a serving class (serving.py)."""
