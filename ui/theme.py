"""Light and dark palettes. "system" follows the desktop's colour scheme."""

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    return QGuiApplication.palette().color(QPalette.Window).lightness() < 128


def dark_palette() -> QPalette:
    p = QPalette()
    base, alt, text, mid = QColor(30, 31, 34), QColor(43, 45, 49), QColor(230, 230, 230), QColor(60, 63, 68)
    for role, color in (
        (QPalette.Window, alt), (QPalette.WindowText, text), (QPalette.Base, base),
        (QPalette.AlternateBase, alt), (QPalette.ToolTipBase, alt), (QPalette.ToolTipText, text),
        (QPalette.Text, text), (QPalette.Button, mid), (QPalette.ButtonText, text),
        (QPalette.BrightText, QColor(255, 90, 90)), (QPalette.Link, QColor(138, 180, 248)),
        (QPalette.Highlight, QColor(66, 133, 244)), (QPalette.HighlightedText, QColor(255, 255, 255)),
        (QPalette.PlaceholderText, QColor(150, 150, 150)),
    ):
        p.setColor(role, color)
    p.setColor(QPalette.Disabled, QPalette.Text, QColor(120, 120, 120))
    p.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(120, 120, 120))
    return p


def apply_theme(app: QApplication, theme: str = "system") -> bool:
    """Apply 'light', 'dark' or 'system'; returns whether the result is dark."""
    app.setStyle("Fusion")  # the same look on every platform, and palettes apply fully
    dark = system_is_dark() if theme == "system" else theme == "dark"
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    return dark


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
