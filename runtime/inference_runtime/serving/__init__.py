"""The shared request path (base class), the serving-class registry and shared wire pieces."""
