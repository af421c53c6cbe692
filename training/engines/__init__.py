"""Rollout engines: how the director's model calls reach the weights being trained."""

from .hf import HFEngine

__all__ = ["HFEngine"]
