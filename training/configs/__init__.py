"""Example CWRPO training configs (YAML), shipped as package data: ``flowsteer.training.configs``."""
