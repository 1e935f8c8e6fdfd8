"""One module per explanation method, each registered by name."""

from engine.methods.base import MethodSpec, Progress, no_progress
from engine.methods.registry import all_methods, get_method, register

__all__ = [
    "MethodSpec",
    "Progress",
    "all_methods",
    "get_method",
    "no_progress",
    "register",
]
