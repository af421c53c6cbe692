"""Package data: the canvas's director-facing texts (read with importlib.resources)."""
