"""The engine: one model at a time, behind one interface, whatever runs it.

`LocalEngine` runs llama.cpp in a supervised child process (`runner/`); the app's
own process never imports llama.cpp.

The names below load on first use (PEP 562): the runner process starts as
`python -m assistant.engine.runner`, which imports this package first, and must
load llama.cpp before anything here pulls in numpy (see runner/__main__.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Engine": "assistant.engine.interface", "ModelSummary": "assistant.engine.interface",
    "Response": "assistant.engine.interface",
    "LocalEngine": "assistant.engine.local", "ModelCrashError": "assistant.engine.local",
    "EngineRouter": "assistant.engine.router", "RemoteEngine": "assistant.engine.remote",
    "ContextPolicy": "assistant.engine.settings", "GenerationSettings": "assistant.engine.settings",
    "LoadSettings": "assistant.engine.settings",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from assistant.engine.interface import Engine, ModelSummary, Response
    from assistant.engine.local import LocalEngine, ModelCrashError
    from assistant.engine.remote import RemoteEngine
    from assistant.engine.router import EngineRouter
    from assistant.engine.settings import ContextPolicy, GenerationSettings, LoadSettings


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
