"""The core's application services, built once per process and shared by its front ends.

The window, the CLI and the local API server each open an `AppServices` and use
nothing below it: the chat service (the one engine, its queue, the only writer of
chat history), the history for reading, the user's settings, statistics, and the
model library (installed models, fit and speed, downloads, remote servers).
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.chat_service import ChatService
from assistant.engine import Engine, EngineRouter
from assistant.history import HistoryStore
from assistant.library_service import LibraryService
from assistant.preferences import generation_settings, load_preferences
from assistant.stats_service import StatsService
from common.settings_store import SettingsStore


@dataclass
class AppServices:
    chat: ChatService
    history: HistoryStore  # read it freely; write only through `chat`
    settings: SettingsStore
    stats: StatsService
    library: LibraryService

    @classmethod
    def open(cls, engine: Engine | None = None, *, history: HistoryStore | None = None,
             settings: SettingsStore | None = None, max_waiting: int | None = None) -> AppServices:
        settings = settings or SettingsStore()
        history = history or HistoryStore.open()
        chat = ChatService(engine or EngineRouter(), history, max_waiting=max_waiting,
                           default_settings=lambda: generation_settings(load_preferences(settings)))
        library = LibraryService(default_context=lambda: load_preferences(settings).get("n_ctx") or None)
        chat.subscribe(library.on_chat_event)  # what is loaded, and when a reply measured a speed
        return cls(chat=chat, history=history, settings=settings, stats=StatsService(chat), library=library)

    def close(self) -> None:
        self.library.close()  # downloads pause; they resume next time
        self.chat.close()
