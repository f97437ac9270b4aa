"""The model manager's Downloads page: one row per download, with its progress, Pause/Resume and Cancel.

The downloads themselves belong to the library service's download manager (in the
core, shared with `assistant models pull`): they go on when the dialog closes, pause
when the app closes, and are shown again, paused, after a restart. This page only
shows them and passes the buttons on. A failure shows here, once, on its row.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QProgressBar, QScrollArea, QVBoxLayout, QWidget

from common.formatting import format_byte_rate, format_bytes, format_eta
from models import download_manager as dm
from ui.library_bridge import LibraryBridge
from ui.library_widgets import button, error_text_style
from ui.plain_text import plain_label, plain_tooltip

STATE_WORDS = {dm.QUEUED: "Queued", dm.STARTING: "Starting…", dm.DOWNLOADING: "Downloading",
               dm.PAUSING: "Pausing…", dm.PAUSED: "Paused", dm.CANCELLING: "Cancelling…", dm.FAILED: "Failed"}


def amount_text(d: dm.DownloadInfo) -> str:
    if d.total:
        return f"{format_bytes(d.done, unknown='size unknown')} of {format_bytes(d.total, unknown='size unknown')}"
    return f"{format_bytes(d.done)} downloaded" if d.done else ""


class DownloadRow(QFrame):
    """One download: its name, a progress bar, bytes · rate · time left, Pause/Resume and Cancel."""

    def __init__(self, manager: dm.DownloadManager, info: dm.DownloadInfo):
        super().__init__()
        self.manager, self.name = manager, info.name
        self.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(self)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        self.title = plain_label(QLabel())
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.state = QLabel()
        self.pause_button = button("Pause", "Pause", self._pause_or_resume)
        self.cancel_button = button("Cancel", "Cancel", lambda: self.manager.cancel(self.name))
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.detail = plain_label(QLabel())
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.title, 0, 0)
        grid.addWidget(self.state, 0, 1, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.pause_button, 0, 2)
        grid.addWidget(self.cancel_button, 0, 3)
        grid.addWidget(self.bar, 1, 0, 1, 4)
        grid.addWidget(self.detail, 2, 0, 1, 4)
        grid.setColumnStretch(0, 1)
        self.update_from(info)

    def _pause_or_resume(self) -> None:
        d = self.manager.get(self.name)
        if d is None:
            return
        if d.status in (dm.QUEUED, *dm.RUNNING):
            self.manager.pause(self.name)
        elif d.status in (dm.PAUSED, dm.FAILED):
            self.manager.resume(self.name)
        # Pausing…: a second press waits for the pause (the button stays, with the focus on it)

    def update_from(self, d: dm.DownloadInfo) -> None:
        self.title.setText(d.label)
        self.title.setToolTip(plain_tooltip(d.name))
        if d.total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(d.done, d.total) / d.total))
            self.bar.setFormat(f"{100 * d.done / d.total:.0f}%")
        elif d.status in dm.RUNNING:
            self.bar.setRange(0, 0)  # busy: the size is not known yet
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(0)
            self.bar.setFormat("")
        amount = amount_text(d)
        self.state.setText(STATE_WORDS.get(d.status, d.status))
        self.detail.setStyleSheet("")
        if d.status == dm.DOWNLOADING:
            self.detail.setText(" · ".join(p for p in (amount, format_byte_rate(d.rate), format_eta(d.eta)) if p))
        elif d.status == dm.STARTING:
            self.detail.setText(f"Resuming from {format_bytes(d.done)}…" if d.done else "Asking the Hub for the file…")
        elif d.status == dm.QUEUED:
            self.detail.setText("Waits for the downloads before it." + (f" {amount} kept." if d.done else ""))
        elif d.status == dm.PAUSED:
            why = "Found in the download folder after a restart. " if d.found_in_cache else ""
            kept = f"{amount} kept. " if amount else ""
            self.detail.setText(f"{why}{kept}Resume continues from there.")
        elif d.status == dm.FAILED:
            self.detail.setText(d.message)
            self.detail.setStyleSheet(error_text_style(self))
        else:
            self.detail.setText(amount)
        waiting_or_running = d.status in (dm.QUEUED, *dm.RUNNING)
        self.pause_button.setText("Pause" if waiting_or_running else "Retry" if d.status == dm.FAILED
                                  else "Pausing…" if d.status == dm.PAUSING else "Resume")
        self.pause_button.setAccessibleName(f"{self.pause_button.text()} download of {d.label}")
        # Enabled while it pauses, too: a disabled button would hand the keyboard focus to Cancel.
        self.pause_button.setEnabled(d.status in (dm.QUEUED, *dm.RUNNING, dm.PAUSING, dm.PAUSED, dm.FAILED))
        self.cancel_button.setEnabled(d.status != dm.CANCELLING)
        self.cancel_button.setAccessibleName(f"Cancel download of {d.label} and delete the part downloaded")
        self.bar.setAccessibleName(f"Download progress of {d.label}")
        self.setAccessibleName(f"Download of {d.label}")


class DownloadsPage(QWidget):
    """Every download the library's manager knows, one row each, kept up to date from the bridge's signals."""

    countChanged = Signal(int)

    def __init__(self, library: LibraryBridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.library = library
        self.rows: dict[str, DownloadRow] = {}
        v = QVBoxLayout(self)
        self.empty = QLabel("No downloads. Pick a model in the Catalogue or Search tab to download it; a download "
                            "keeps going when this window is closed, and one that was stopped resumes where it "
                            "left off.")
        self.empty.setWordWrap(True)
        v.addWidget(self.empty)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setAccessibleName("Downloads")
        holder = QWidget()
        self.rows_layout = QVBoxLayout(holder)
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.rows_layout.addStretch(1)
        scroll.setWidget(holder)
        v.addWidget(scroll, 1)
        for signal in (library.downloadAdded, library.downloadChanged, library.downloadProgress,
                       library.downloadPaused, library.downloadFailed):
            signal.connect(self.show_download)
        library.downloadRemoved.connect(self.remove_download)
        for info in library.downloads.downloads():
            self.show_download(info)
        self._count_changed()

    def show_download(self, info: dm.DownloadInfo) -> None:
        if info.status == dm.DONE:
            return
        row = self.rows.get(info.name)
        if row is None:
            row = DownloadRow(self.library.downloads, info)
            self.rows[info.name] = row
            self.rows_layout.insertWidget(self.rows_layout.count() - 1, row)
            self._count_changed()
        else:
            row.update_from(info)

    def remove_download(self, info: dm.DownloadInfo) -> None:
        row = self.rows.pop(info.name, None)
        if row is not None:
            row.hide()
            self.rows_layout.removeWidget(row)
            row.deleteLater()
            self._count_changed()

    def _count_changed(self) -> None:
        self.empty.setVisible(not self.rows)
        self.countChanged.emit(len(self.rows))
