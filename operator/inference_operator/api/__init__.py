"""Versioned schemas of the operator's custom resources."""
