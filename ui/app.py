"""Start the desktop app: `assistant-app` (or `python -m ui`)."""

import logging
import sys

log = logging.getLogger(__name__)


def main(argv=None) -> int:
    from PySide6.QtWidgets import QApplication, QMessageBox

    from assistant.preferences import load_preferences
    from assistant.services import AppServices
    from common.errors import UserError
    from common.logs import setup_logging
    from common.settings_store import Setting, SettingsStore
    from ui.main_window import MainWindow
    from ui.theme import apply_theme

    setup_logging()
    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    app.setApplicationName("Hearth")
    app.setOrganizationName("hearthchat")
    settings = SettingsStore()
    dark = apply_theme(app, load_preferences(settings).get("theme", "system"))
    try:
        services = AppServices.open(settings=settings)
    except UserError as exc:
        log.error("the app could not start: %s", exc)
        QMessageBox.critical(None, "Hearth", str(exc))
        return 1
    from ui.collection import CollectBetweenEvents

    collector = CollectBetweenEvents(app)  # noqa: F841  (the app owns it: collection between events only)
    window = MainWindow(services)
    window.chat.set_dark(dark)
    window.show()
    # The window is up before the model loads: loading never blocks it.
    # Checked like every other setting (a hand-edited file): anything but a name starts the built-in model.
    saved = {k: v for k, v in settings.load().items() if k == "last_model"}
    rule = {"last_model": Setting(str, optional=True, max_chars=4096)}
    last_model = settings.checked(saved, rule, {"last_model": "starter"})
    window.load_model((last_model.get("last_model") or "").strip() or "starter", automatic=True)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
