"""The window's garbage collection runs between events, never in the middle of one."""

import gc


def test_collection_is_off_while_the_app_runs_and_a_timer_collects_between_events(qtbot):
    from ui.collection import YOUNG_EVERY_MS, CollectBetweenEvents

    before = gc.isenabled()
    collector = CollectBetweenEvents()
    try:
        assert not gc.isenabled()
        counts = []
        real_collect = gc.collect

        def counting(generation=2):
            counts.append(generation)
            return real_collect(generation)

        gc.collect = counting
        try:
            qtbot.wait(int(YOUNG_EVERY_MS * 2.5))
        finally:
            gc.collect = real_collect
        assert counts and set(counts) <= {0, 2}
    finally:
        collector.stop()
    assert gc.isenabled() == before


def test_a_theme_change_repolishes_with_collection_held_off(qtbot, monkeypatch):
    """set_theme repolishes every widget: a collection in the middle of it crashed the process once."""
    from PySide6.QtWidgets import QApplication

    from ui import theme

    seen = []
    real = QApplication.setStyleSheet

    def spy(app, sheet):
        seen.append(gc.isenabled())
        return real(app, sheet)

    monkeypatch.setattr(QApplication, "setStyleSheet", spy)
    was = gc.isenabled()
    gc.enable()
    try:
        theme.apply_theme(QApplication.instance(), "dark")
        assert seen == [False] and gc.isenabled()
        theme.apply_theme(QApplication.instance(), "light")
    finally:
        if not was:
            gc.disable()
