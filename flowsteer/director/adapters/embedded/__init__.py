"""Package data: the shipped director adapter (see MODEL_CARD.md)."""
