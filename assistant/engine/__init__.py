"""The engine: one model at a time, behind one interface, whatever runs it.

`LocalEngine` runs llama.cpp in a supervised child process (`runner/`); the app's
own process never imports llama.cpp.
"""

from assistant.engine.interface import Engine, ModelSummary, Response
from assistant.engine.local import LocalEngine, ModelCrashError
from assistant.engine.settings import ContextPolicy, GenerationSettings, LoadSettings

__all__ = ["Engine", "LocalEngine", "ModelCrashError", "ModelSummary", "Response", "GenerationSettings",
           "LoadSettings", "ContextPolicy"]
