"""The core's application services, built once per process and shared by its front ends.

The window, the CLI and the local API server each open an `AppServices` and use
nothing below it: the chat service (the one engine, its queue, the only writer of
chat history), the history for reading, and the user's settings. Later services
(the model library, statistics) hang here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.chat_service import ChatService
from assistant.engine import Engine, EngineRouter
from assistant.history import HistoryStore
from assistant.preferences import generation_settings, load_preferences
from assistant.stats_service import StatsService
from common.settings_store import SettingsStore


@dataclass
class AppServices:
    chat: ChatService
    history: HistoryStore  # read it freely; write only through `chat`
    settings: SettingsStore
    stats: StatsService

    @classmethod
    def open(cls, engine: Engine | None = None, *, history: HistoryStore | None = None,
             settings: SettingsStore | None = None, max_waiting: int | None = None) -> AppServices:
        settings = settings or SettingsStore()
        history = history or HistoryStore.open()
        chat = ChatService(engine or EngineRouter(), history, max_waiting=max_waiting,
                           default_settings=lambda: generation_settings(load_preferences(settings)))
        return cls(chat=chat, history=history, settings=settings, stats=StatsService(chat))

    def close(self) -> None:
        self.chat.close()
