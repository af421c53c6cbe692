"""Package data: the baselines' prompts and the fixed workflow templates (read with importlib.resources)."""
