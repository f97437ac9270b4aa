"""Start the desktop app: `assistant-app` (or `python -m ui`)."""

import sys


def main(argv=None) -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from assistant.engine import LocalEngine
    from common.errors import UserError
    from assistant.history import HistoryStore
    from ui.main_window import MainWindow
    from ui.settings_dialog import load_defaults
    from ui.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    app.setApplicationName("Hearth")
    app.setOrganizationName("hearthchat")
    settings = QSettings("hearthchat", "hearthchat")
    dark = apply_theme(app, load_defaults(settings).get("theme", "system"))
    try:
        history = HistoryStore.open()
    except UserError as exc:
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.critical(None, "Hearth", str(exc))
        return 1
    window = MainWindow(LocalEngine, history, HistoryStore.open, settings=settings)
    window.chat.set_dark(dark)
    window.show()
    # The window is up before the model loads: loading never blocks it.
    window.load_model(settings.value("last_model") or "starter", automatic=True)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
