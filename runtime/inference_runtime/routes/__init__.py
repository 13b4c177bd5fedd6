"""Routers per concern: health/info, metrics, and the protocol routes of the loaded serving classes."""
