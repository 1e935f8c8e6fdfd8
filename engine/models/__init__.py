"""Model zoo and model-related helpers for Lantern."""
