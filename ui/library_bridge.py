"""The library service's callbacks as Qt signals, for the picker, the model manager and its pages.

The library service and its download manager call their listeners on whichever
thread the change happened (a download's worker, the service's own worker, or the
UI thread for pause and cancel). `LibraryBridge` queues every event through one
queued connection, so the widgets see them on the UI thread and in the order they
happened, whichever thread they came from.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

from assistant.library_service import InstalledChanged, LibraryService, RemotesChanged, TableReady
from models.download_manager import DownloadEvent, DownloadManager

log = logging.getLogger(__name__)


class LibraryBridge(QObject):
    # Downloads: each carries the download's DownloadInfo as it was when the event happened.
    downloadAdded = Signal(object)
    downloadChanged = Signal(object)  # its status changed
    downloadProgress = Signal(object)
    downloadPaused = Signal(object)
    downloadFailed = Signal(object)  # .message says why, in plain words
    downloadFinished = Signal(object)  # .installed_as names the installed model
    downloadCancelled = Signal(object)
    downloadRemoved = Signal(object)  # gone from the list (finished or cancelled)
    installedChanged = Signal(object)  # the new InstalledIndex
    tableReady = Signal(object)  # a new ModelTable: every view shows its figures
    remotesChanged = Signal(object)  # the remote servers now (a tuple of RemoteServer)
    _queued = Signal(object)

    _DOWNLOAD_SIGNALS = {"added": "downloadAdded", "changed": "downloadChanged", "progress": "downloadProgress",
                         "paused": "downloadPaused", "failed": "downloadFailed", "finished": "downloadFinished",
                         "cancelled": "downloadCancelled", "removed": "downloadRemoved"}

    def __init__(self, service: LibraryService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self._queued.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self._unsubscribe = service.subscribe(self._relay)

    @property
    def downloads(self) -> DownloadManager:
        return self.service.downloads

    def _relay(self, event: Any) -> None:
        try:
            self._queued.emit(event)
        except RuntimeError:  # the window is gone (shutting down)
            log.debug("dropped %s: the library bridge was deleted", type(event).__name__)

    @Slot(object)
    def _deliver(self, event: Any) -> None:
        if isinstance(event, DownloadEvent):
            getattr(self, self._DOWNLOAD_SIGNALS[event.kind]).emit(event.download)
        elif isinstance(event, InstalledChanged):
            self.installedChanged.emit(event.index)
        elif isinstance(event, TableReady):
            self.tableReady.emit(event.table)
        elif isinstance(event, RemotesChanged):
            self.remotesChanged.emit(event.servers)

    def close(self) -> None:
        self._unsubscribe()
