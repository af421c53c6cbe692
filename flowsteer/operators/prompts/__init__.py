"""System prompts of the built-in operators (package data read with importlib.resources)."""
