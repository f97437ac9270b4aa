"""Images in the window: the tray of images attached to the next message, thumbnails in messages, a larger view.

The window never decodes a user's image file. Every picture it shows is a PNG that the image
check (`assistant.engine.image_check`, a process of its own) wrote from the file: thumbnails
when an image is attached or a conversation is opened, a larger rendering when one is clicked.
A file that cannot be used is one sentence under the tray; nothing is attached or saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.engine.image_check import CheckedImage, check_images
from assistant.images import MAX_IMAGES_PER_MESSAGE, ImageAttachment, ImageError, attachment, read_image_file
from ui.icons import icon
from ui.workers import run_in_background

log = logging.getLogger(__name__)

THUMB = 72  # pixels on the longest side, in the tray and in messages
LARGE = 1024  # the larger view
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.gif *.webp *.bmp)"
# Clipboard and drag formats whose bytes are an image file as it is (decoded by the check, never by Qt).
RAW_FORMATS = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")


def pixmap_from_png(data: bytes) -> QPixmap:
    """A PNG the image check wrote (never a user's file)."""
    pixmap = QPixmap()
    pixmap.loadFromData(data, "PNG")
    return pixmap


class ThumbnailCache:
    """Thumbnails by SHA-256, made by the image check in the background, shared by every message widget."""

    def __init__(self) -> None:
        self._pixmaps: dict[str, QPixmap] = {}
        self._waiting: dict[str, list[Callable[[QPixmap | None], None]]] = {}

    def get(self, sha256: str) -> QPixmap | None:
        return self._pixmaps.get(sha256)

    def put(self, sha256: str, png: bytes) -> None:
        if png:
            self._pixmaps[sha256] = pixmap_from_png(png)

    def request(self, sha256: str, read: Callable[[], ImageAttachment], done: Callable[[QPixmap | None], None],
                context=None) -> None:
        """`done(pixmap)` once the thumbnail exists (None if the image cannot be shown); read() gives its bytes."""
        if sha256 in self._pixmaps:
            done(self._pixmaps[sha256])
            return
        if sha256 in self._waiting:
            self._waiting[sha256].append(done)
            return
        self._waiting[sha256] = [done]

        def make() -> bytes:
            return check_images([read()], side=THUMB * 2)[0].thumbnail_png

        def finished(png) -> None:
            self.put(sha256, png)
            for callback in self._waiting.pop(sha256, []):
                callback(self._pixmaps.get(sha256))

        def failed(exc) -> None:
            log.info("no thumbnail for image %s: %s", sha256[:12], exc)
            for callback in self._waiting.pop(sha256, []):
                callback(None)

        run_in_background(make, finished, failed, context=context)


THUMBNAILS = ThumbnailCache()


class ImageButton(QToolButton):
    """One thumbnail; clicking it opens the larger view."""

    def __init__(self, name: str | None, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("imageThumbnail")
        self.setIconSize(QSize(THUMB, THUMB))
        self.setFixedSize(THUMB + 8, THUMB + 8)
        self.setAutoRaise(True)
        label = name or "image"
        self.setToolTip(f"{label} (click to view larger)")
        self.setAccessibleName(f"Image {label}")
        self.setText("…")

    def show_pixmap(self, pixmap: QPixmap | None) -> None:
        if pixmap is None or pixmap.isNull():
            self.setText("?")
            self.setToolTip("This image cannot be shown")
            return
        self.setText("")
        self.setIcon(pixmap)


class ImageViewer(QDialog):
    """The larger view of one image: a PNG of it at most LARGE pixels, drawn by the image check."""

    def __init__(self, read: Callable[[], ImageAttachment], name: str | None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(name or "Image")
        self.setObjectName("imageViewer")
        self.setAttribute(Qt.WA_DeleteOnClose)
        layout = QVBoxLayout(self)
        self.picture = QLabel("Preparing the image…")
        self.picture.setAlignment(Qt.AlignCenter)
        self.picture.setAccessibleName("Image")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.picture)
        layout.addWidget(scroll, 1)
        self.caption = QLabel("")
        self.caption.setObjectName("imageCaption")
        layout.addWidget(self.caption)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(720, 560)
        run_in_background(lambda: check_images([read()], side=LARGE)[0], self._show, self._failed, context=self)

    def _show(self, checked: CheckedImage) -> None:
        self.picture.setPixmap(pixmap_from_png(checked.thumbnail_png))
        image = checked.image
        size = f"{image.width} × {image.height} pixels" if image.width and image.height else ""
        self.caption.setText(" · ".join(x for x in (image.name or "", size) if x))

    def _failed(self, exc) -> None:
        self.picture.setText(str(exc))


class ImageStrip(QWidget):
    """A message's images as a row of thumbnails."""

    def __init__(self, refs: list, read: Callable[[object], ImageAttachment] | None, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("imageStrip")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.buttons: list[ImageButton] = []
        for ref in refs:
            button = ImageButton(ref.name, self)
            self.buttons.append(button)
            layout.addWidget(button)
            if read is None:
                button.show_pixmap(None)
                continue
            reader = (lambda r=ref: read(r))
            button.clicked.connect(lambda _=False, r=reader, n=ref.name: ImageViewer(r, n, self.window()).open())
            THUMBNAILS.request(ref.sha256, reader, button.show_pixmap, context=button)
        layout.addStretch(1)


class AttachmentTray(QWidget):
    """The images going with the next message: thumbnails with a remove button, and one sentence when a file
    cannot be used. Images are checked (decoded in a process of their own) as they are added."""

    changed = Signal()  # the attachments changed: the context meter counts again
    notify = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentTray")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 4, 8, 0)
        outer.setSpacing(2)
        self.row = QHBoxLayout()
        self.row.setSpacing(4)
        self.row.addStretch(1)
        outer.addLayout(self.row)
        self.problem = QLabel("")
        self.problem.setObjectName("attachmentProblem")
        self.problem.setWordWrap(True)
        self.problem.setAccessibleName("Image problem")
        self.problem.setStyleSheet("color: #d9534f;")
        self.problem.hide()
        outer.addWidget(self.problem)
        self._checked: dict[str, ImageAttachment] = {}  # checked images by SHA-256
        self._widgets: dict[str, QWidget] = {}  # by SHA-256, in the order they were added
        self.checking = 0
        self.setVisible(False)

    @property
    def images(self) -> list[ImageAttachment]:
        """The checked images, in the order they were added (checks may finish in another order)."""
        return [self._checked[sha] for sha in self._widgets if sha in self._checked]

    # --- adding
    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Attach images", str(Path.home()), IMAGE_FILTER)
        self.add_files(paths)

    def add_files(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self._check_and_add(read_image_file(path))
            except ImageError as exc:
                self.say(str(exc))

    def add_bytes(self, data: bytes, name: str | None = None) -> None:
        try:
            self._check_and_add(attachment(data, name))
        except ImageError as exc:
            self.say(str(exc))

    def add_mime(self, mime: QMimeData) -> bool:
        """Images from a paste or a drop: files by their paths, or an image's own bytes. True if it held any."""
        if mime.hasUrls():
            paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if paths:
                self.add_files(paths)
                return True
        for fmt in RAW_FORMATS:
            if mime.hasFormat(fmt):
                data = bytes(mime.data(fmt).data())
                self.add_bytes(data, f"pasted.{fmt.split('/')[1]}")
                return True
        if mime.hasImage():
            # Only a decoded image on offer (some clipboards): Qt already holds its pixels; saved as PNG, it goes
            # through the same check as any file.
            from PySide6.QtCore import QBuffer, QByteArray, QIODevice

            image = mime.imageData()
            buffer = QByteArray()
            device = QBuffer(buffer)
            device.open(QIODevice.WriteOnly)
            if image is not None and not image.isNull() and image.save(device, "PNG"):
                self.add_bytes(bytes(buffer.data()), "pasted.png")
                return True
        return False

    @staticmethod
    def can_take(mime: QMimeData) -> bool:
        return (mime.hasImage() or any(mime.hasFormat(f) for f in RAW_FORMATS)
                or (mime.hasUrls() and any(u.isLocalFile() and Path(u.toLocalFile()).suffix.lower() in
                                           (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp") for u in mime.urls())))

    def _check_and_add(self, image: ImageAttachment) -> None:
        if image.sha256 in self._widgets:
            return
        if len(self.images) + self.checking >= MAX_IMAGES_PER_MESSAGE:
            self.say(f"A message may hold at most {MAX_IMAGES_PER_MESSAGE} images.")
            return
        self.checking += 1
        button = ImageButton(image.name, self)
        self._widgets[image.sha256] = button
        self.row.insertWidget(self.row.count() - 1, button)
        self.setVisible(True)

        def done(checked: list[CheckedImage]) -> None:
            self.checking -= 1
            item = checked[0]
            THUMBNAILS.put(item.image.sha256, item.thumbnail_png)
            self._added(item, button)

        def failed(exc) -> None:
            self.checking -= 1
            self._drop_widget(image.sha256)
            self.say(str(exc))

        run_in_background(lambda: check_images([image], side=THUMB * 2), done, failed, context=self)

    def _added(self, item: CheckedImage, button: ImageButton) -> None:
        image = item.image
        self._checked[image.sha256] = image
        button.show_pixmap(THUMBNAILS.get(image.sha256))
        button.clicked.connect(lambda _=False: ImageViewer(lambda: image, image.name, self.window()).open())
        remove = QToolButton(button)
        remove.setObjectName("removeImage")
        remove.setIcon(icon("dismiss"))
        remove.setAutoRaise(True)
        remove.setToolTip("Remove this image")
        remove.setAccessibleName(f"Remove image {image.name or ''}".strip())
        remove.move(THUMB - 12, 0)
        remove.clicked.connect(lambda _=False, sha=image.sha256: self.remove(sha))
        remove.show()
        self.problem.hide()
        self.changed.emit()

    # --- the rest
    def remove(self, sha256: str) -> None:
        self._checked.pop(sha256, None)
        self._drop_widget(sha256)
        self.changed.emit()

    def _drop_widget(self, sha256: str) -> None:
        widget = self._widgets.pop(sha256, None)
        if widget is not None:
            self.row.removeWidget(widget)
            widget.hide()  # gone at once, not when the event loop next deletes it
            widget.deleteLater()
        self.setVisible(bool(self._widgets) or self.problem.isVisible())

    def take(self) -> list[ImageAttachment]:
        """The checked images, for the message being sent; the tray empties."""
        images = self.images
        for sha in list(self._widgets):
            self._drop_widget(sha)
        self._checked = {}
        self.problem.hide()
        self.setVisible(False)
        return images

    def put_back(self, images: list[ImageAttachment]) -> None:
        """A message that could not be sent: its images wait here again."""
        for image in images:
            if image.sha256 not in self._widgets:
                button = ImageButton(image.name, self)
                self._widgets[image.sha256] = button
                self.row.insertWidget(self.row.count() - 1, button)
                self._added(CheckedImage(image, b""), button)
        self.setVisible(bool(self._widgets))

    def say(self, sentence: str) -> None:
        self.problem.setText(sentence)
        self.problem.show()
        self.setVisible(True)
        self.notify.emit(sentence)
