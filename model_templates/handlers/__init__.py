"""Inference handler templates, one per framework adapter (`<framework>/inference.py.j2`)."""
