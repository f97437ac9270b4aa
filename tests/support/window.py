"""Open the real main window on real services, with the engine a test chooses."""

from __future__ import annotations

from pathlib import Path

from assistant.history import HistoryStore
from assistant.services import AppServices
from common.settings_store import SettingsStore


def open_services(tmp_path: Path, engine, *, db: Path | None = None) -> AppServices:
    history = HistoryStore.open(db or tmp_path / "history.db")
    return AppServices.open(engine=engine, history=history, settings=SettingsStore(tmp_path / "settings.json"))


def open_window(qtbot, tmp_path: Path, engine, *, db: Path | None = None):
    from ui.main_window import MainWindow

    window = MainWindow(open_services(tmp_path, engine, db=db))
    qtbot.addWidget(window)
    return window
