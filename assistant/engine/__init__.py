"""The engine: the one object in the process that owns the loaded model."""

from assistant.engine.engine import Engine, Response
from assistant.engine.settings import ContextPolicy, GenerationSettings, LoadSettings

__all__ = ["Engine", "Response", "GenerationSettings", "LoadSettings", "ContextPolicy"]
