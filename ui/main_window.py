"""The main window: sidebar, conversation, input, model picker, status bar.

The window never runs the model and never writes the history. Turns go to the
chat service (through `ChatBridge`); its events come back as Qt signals: the
started turn's ids, the text as it streams, and the saved reply with its stats,
so a turn never reads its conversation back from the database.
"""

import logging

import psutil
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from assistant.chat_service import TurnRequest
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.history.records import Message
from assistant.preferences import generation_settings, load_preferences, load_settings, save_preferences
from assistant.services import AppServices
from common.errors import UserError
from common.formatting import format_bytes
from ui.base_notice import BaseModelNotice
from ui.bridge import BenchmarkBridge, ChatBridge
from ui.chat_view import ChatView
from ui.conversation_header import ConversationHeader
from ui.icons import icon
from ui.input_box import InputBox
from ui.library_bridge import LibraryBridge
from ui.model_manager import ModelManager
from ui.model_picker import ModelPicker
from ui.notices import HistoryNotices
from ui.server_page import ServerPage
from ui.settings_dialog import ConversationSettingsDialog, SettingsDialog
from ui.sidebar import Sidebar
from ui.workers import wait_for_background

log = logging.getLogger(__name__)
NARROW = 900  # below this width the sidebar folds away and the toolbar shows icons only
TOOLBAR_ROOM = 220  # px of the top toolbar besides the picker: the sidebar button, the load bar, margins
LAST_CONVERSATION = "last_conversation"


class MainWindow(QMainWindow):
    def __init__(self, services: AppServices):
        super().__init__()
        self.setWindowTitle("Hearth — private local chat")
        self.resize(1180, 780)
        # Set, not left to the layouts: the status line's details fold away below NARROW, so the
        # window may be made that narrow in one step.
        self.setMinimumSize(600, 420)
        self.services = services
        self.history = services.history  # read only: writes go through the chat service
        self.settings_store = services.settings
        self.defaults = load_preferences(self.settings_store)
        self.current_id: int | None = None
        # A new chat's own system prompt and settings, kept until its first message creates it.
        self.pending_chat: dict = {}
        self.model: dict = {}
        self.live: dict[int, str] = {}  # reply id -> text streamed so far (ahead of the database)
        self.live_thinking: dict[int, str] = {}  # reply id -> its thinking streamed so far
        self.generating = False
        self._turn = None  # the window's turn in flight (a TurnHandle)

        self.bridge = ChatBridge(services.chat, self)
        self.library = LibraryBridge(services.library, self)
        self._connect_bridge()
        self._build()
        self._shortcuts()
        self._ram_timer = QTimer(self, interval=1000)
        self._ram_timer.timeout.connect(self._update_status)
        self._ram_timer.timeout.connect(self._show_settings_notices)
        self._ram_timer.start()
        self._show_settings_notices()
        from ui.theme import is_dark

        self.chat.set_dark(is_dark())  # the theme is applied before the window is built: code colours follow it
        self._reopen_last_conversation()

    # --- Building
    def _build(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setFloatable(False)
        toolbar.setIconSize(QSize(18, 18))
        toolbar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        toolbar.setAccessibleName("Main toolbar")
        self.toolbar = toolbar
        self.addToolBar(toolbar)
        self.sidebar_action = toolbar.addAction("Conversations", self.toggle_sidebar)
        self.model_picker = self._make_model_picker()
        toolbar.addWidget(self.model_picker)
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 0)
        self.load_progress.setMaximumWidth(120)
        self.load_progress.setAccessibleName("Loading model")
        # Space is kept for the bar while it is hidden, so the toolbar never changes its layout.
        policy = self.load_progress.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.load_progress.setSizePolicy(policy)
        self.load_progress.hide()
        toolbar.addWidget(self.load_progress)
        # The views sit on a rail down the left edge, as in LM Studio and Jan: it never runs out of
        # room beside the picker, however narrow the window. They are one group: the view shown is
        # checked, so the rail says where you are.
        rail = QToolBar("Views")
        rail.setObjectName("viewRail")
        rail.setMovable(False)
        rail.setFloatable(False)
        rail.setOrientation(Qt.Vertical)
        rail.setIconSize(QSize(20, 20))
        rail.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
        rail.setAccessibleName("Views")
        self.rail = rail
        self.addToolBar(Qt.LeftToolBarArea, rail)
        self.view_group = QActionGroup(self)
        self.view_group.setExclusive(True)
        self.chat_action = self._view_action("Chat", "chat", "Show chat", "Ctrl+1", lambda: self.show_page(0))
        self.stats_action = self._view_action("Statistics", "statistics", "Show statistics", "Ctrl+2",
                                              lambda: self.show_page(1))
        self.compare_action = self._view_action("Compare", "compare", "Compare models side by side", "Ctrl+3",
                                                self.show_compare)
        self.server_action = self._view_action("Server", "server", "Show local server", "Ctrl+4",
                                               self.show_server_page)
        rail.addSeparator()
        self.models_action = self._dialog_action("Models", "models", "Open model manager", "Ctrl+5",
                                                 self.open_model_manager)
        self.settings_action = self._dialog_action("Settings", "settings", "Open settings", "Ctrl+6",
                                                   self.open_settings)
        self.chat_action.setChecked(True)
        self.sidebar_action.setShortcut(QKeySequence("Ctrl+B"))
        self.sidebar_action.setToolTip("Show or hide the conversations (Ctrl+B)")
        self.sidebar_action.setObjectName("sidebar")
        for bar in (self.toolbar, self.rail):
            for action in bar.actions():
                widget = bar.widgetForAction(action)
                if widget is not None and not action.isSeparator() and action.text():
                    widget.setFocusPolicy(Qt.StrongFocus)  # every view has a place in the Tab order
        self.toolbar.widgetForAction(self.sidebar_action).setAccessibleName("Show or hide conversations")
        self._apply_icons()

        self.sidebar = Sidebar(self.history, self.services.chat)
        self.sidebar.conversationSelected.connect(self.open_conversation)
        self.sidebar.messageSelected.connect(self.open_conversation)
        self.sidebar.newChatRequested.connect(self.new_chat)
        self.sidebar.conversationDeleted.connect(self._deleted)
        self.sidebar.conversationRenamed.connect(self._renamed)
        self.sidebar.notify.connect(lambda text: self.statusBar().showMessage(text, 4000))

        self.chat = ChatView()
        self.chat.image_reader = self._read_image
        self.chat.set_stats_mode(self.defaults.get("stats_line", "always"))
        self.chat.editRequested.connect(self.edit_message)
        self.chat.regenerateRequested.connect(self.regenerate)
        self.chat.continueRequested.connect(self.continue_reply)
        self.chat.branchRequested.connect(self.switch_branch)
        self.chat.notify.connect(lambda text: self.statusBar().showMessage(text, 3000))
        self.input = InputBox()
        self.input.sendRequested.connect(self.send)
        self.input.stopRequested.connect(self.stop)
        self.input.draftChanged.connect(self._count_draft)
        self.input.tray.notify.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self._sent: tuple[str, list] | None = None  # the last message sent: put back if it could not be
        chat_page = QWidget()
        chat_layout = QVBoxLayout(chat_page)
        chat_layout.setContentsMargins(0, 0, 0, 0)
        chat_layout.setSpacing(0)
        self.notices = HistoryNotices(self.history, self.services.chat.dismiss_notice)
        chat_layout.addWidget(self.notices)
        self.header = ConversationHeader()
        self.header.settingsRequested.connect(lambda: self.open_conversation_settings())
        self.header.promptRequested.connect(lambda: self.open_conversation_settings(focus_prompt=True))
        self.header.show_conversation(None, default_prompt=self.defaults.get("system_prompt") or "")
        chat_layout.addWidget(self.header)
        chat_layout.addWidget(self.chat, 1)
        self.base_notice = BaseModelNotice(before_hiding=self.chat.hold_position)
        self.base_notice.switchRequested.connect(self.load_model)
        self.base_notice.completionToggled.connect(self._completion_mode)
        chat_layout.addWidget(self.base_notice)
        chat_layout.addWidget(self.input)

        # The conversations belong to the chat: they sit beside it, and the other views get the
        # whole width (the statistics table and the Compare columns need it).
        splitter = QSplitter()
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(chat_page)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 860])
        self.splitter = splitter
        self.pages = QStackedWidget()
        self.pages.addWidget(splitter)
        self.server_page = ServerPage(self.services, self)  # the OpenAI-compatible API on the same services
        self.pages.addWidget(self.server_page)
        self.stats_view = None  # built on first show: it reads the whole history
        self.compare_page = None  # built on first show
        self.setCentralWidget(self.pages)
        # The conversations button acts on the chat's list: off elsewhere, so it never reads as a view.
        self.pages.currentChanged.connect(lambda i: self.sidebar_action.setEnabled(self.pages.widget(i) is splitter))
        self._sidebar_wanted = True  # the user's choice; a narrow window folds the sidebar regardless

        self.status_model = QLabel("No model")
        self.status_ram = QLabel()
        self.status_threads = QLabel()
        self.status_backend = QLabel()
        for label, name in ((self.status_model, "Loaded model"), (self.status_ram, "Memory used by the app"),
                            (self.status_threads, "Threads"), (self.status_backend, "Backend")):
            label.setAccessibleName(name)
            self.statusBar().addPermanentWidget(label)
        self.statusBar().addPermanentWidget(self.server_page.status_label)
        self._update_status()

    def _make_model_picker(self) -> ModelPicker:
        picker = ModelPicker(self.library, self.bridge, open_manager=self.open_model_manager)
        picker.modelRequested.connect(self.load_model)
        picker.sizesChanged.connect(lambda: QTimer.singleShot(0, self, self.fit_toolbar))
        return picker

    def button_for(self, action: QAction):
        """The button that shows `action`, on the top toolbar or on the views' rail."""
        return self.toolbar.widgetForAction(action) or self.rail.widgetForAction(action)

    def _view_action(self, text, key, name, shortcut, slot) -> QAction:
        action = self.rail.addAction(text, slot)
        action.setObjectName(key)
        action.setCheckable(True)
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{name} ({QKeySequence(shortcut).toString(QKeySequence.NativeText)})")
        self.view_group.addAction(action)
        self.rail.widgetForAction(action).setAccessibleName(name)
        return action

    def _dialog_action(self, text, key, name, shortcut, slot) -> QAction:
        action = self.rail.addAction(text, slot)
        action.setObjectName(key)
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{name} ({QKeySequence(shortcut).toString(QKeySequence.NativeText)})")
        self.rail.widgetForAction(action).setAccessibleName(name)
        return action

    def _apply_icons(self) -> None:
        """Icons in the palette's colours: drawn again after a theme change."""
        for action in [*self.toolbar.actions(), *self.rail.actions()]:
            if action.objectName():
                action.setIcon(icon(action.objectName()))

    # Shown by F1 and Ctrl+/ (the list is the one place the shortcuts are written down).
    SHORTCUTS = (("Ctrl+1", "Chat"), ("Ctrl+2", "Statistics"), ("Ctrl+3", "Compare"), ("Ctrl+4", "Local server"),
                 ("Ctrl+5", "Models"), ("Ctrl+6", "Settings (defaults)"), ("Ctrl+N", "New chat"),
                 ("Ctrl+F", "Search conversations"), ("Ctrl+L", "Message box"), ("Ctrl+B", "Show or hide conversations"),
                 ("Enter", "Send"), ("Shift+Enter", "New line in a message"),
                 ("Esc", "Stop the reply (in the inline editor: cancel the edit)"),
                 ("F2 / Delete", "Rename / delete the selected conversation"),
                 ("Tab / Shift+Tab", "Next / previous control"), ("F1 or Ctrl+/", "This list"), ("Ctrl+Q", "Quit"))

    def _shortcuts(self) -> None:
        QShortcut(QKeySequence("Ctrl+N"), self, self.new_chat)
        # Ctrl+Q everywhere (the platform's Quit key where it has another): the window closes as its
        # close button does, the reply in flight stopped and saved.
        QShortcut(QKeySequence("Ctrl+Q"), self, self.close, context=Qt.ApplicationShortcut)
        if QKeySequence(QKeySequence.Quit) != QKeySequence("Ctrl+Q") and not QKeySequence(QKeySequence.Quit).isEmpty():
            QShortcut(QKeySequence(QKeySequence.Quit), self, self.close, context=Qt.ApplicationShortcut)
        QShortcut(QKeySequence("Ctrl+F"), self, self.focus_search)
        QShortcut(QKeySequence("Esc"), self, self.stop)
        QShortcut(QKeySequence("Ctrl+L"), self, lambda: self.input.edit.setFocus())
        QShortcut(QKeySequence("F1"), self, self.show_shortcuts)
        QShortcut(QKeySequence("Ctrl+/"), self, self.show_shortcuts)

    def focus_search(self) -> None:
        self.show_page(0)
        if self.sidebar.isHidden():
            self.set_sidebar_visible(True)
        self.sidebar.search.setFocus()

    def make_shortcuts_dialog(self) -> QDialog:
        """The shortcuts in a table sized to its rows and columns: every description whole, no scroll bars."""
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.setAccessibleName("Keyboard shortcuts")
        layout = QVBoxLayout(dialog)
        table = QTableWidget(len(self.SHORTCUTS), 2)
        table.setAccessibleName("Shortcuts")
        table.setHorizontalHeaderLabels(["Keys", "Does"])
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.NoEditTriggers)
        table.setWordWrap(False)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        for row, (keys, does) in enumerate(self.SHORTCUTS):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(does))
        table.resizeColumnsToContents()
        table.resizeRowsToContents()
        header = table.horizontalHeader()
        for column in range(2):  # a little air after the longest text of each column
            table.setColumnWidth(column, table.columnWidth(column) + 16)
        frame = 2 * table.frameWidth()
        width = header.length() + frame
        height = table.verticalHeader().length() + header.height() + frame
        table.setFixedSize(width, height)
        header.setStretchLastSection(True)
        layout.addWidget(table)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        layout.setSizeConstraint(QVBoxLayout.SetFixedSize)  # the dialog is the table's size
        return dialog

    def show_shortcuts(self) -> None:
        dialog = self.make_shortcuts_dialog()
        dialog.exec()
        dialog.deleteLater()

    # --- Narrow windows: the sidebar folds away, the toolbar keeps its height with icons only
    def toggle_sidebar(self) -> None:
        self._sidebar_wanted = self.sidebar.isHidden()
        self.set_sidebar_visible(self._sidebar_wanted)

    def set_sidebar_visible(self, visible: bool) -> None:
        self.sidebar.setVisible(visible)

    def fit_toolbar(self) -> None:
        """Labels while they fit; icons only (with tooltips) when they would not. The top toolbar
        keeps its height: only the sidebar button's label goes."""
        self.toolbar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        # A narrow window: the picker's name box and family name give way (and the load bar narrows), so the
        # picker and its sizes stay on the toolbar rather than going to its overflow.
        compact = self.model_picker.full_width() + TOOLBAR_ROOM > self.width()
        self.model_picker.set_compact(compact)
        self.load_progress.setMaximumWidth(60 if compact else 120)
        if self.width() < NARROW or self.toolbar.sizeHint().width() > self.width():
            self.toolbar.setToolButtonStyle(Qt.ToolButtonIconOnly)
        self.rail.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
        if self.rail.sizeHint().height() > self.rail.height() + 1 and self.rail.height() > 0:
            self.rail.setToolButtonStyle(Qt.ToolButtonIconOnly)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        narrow = self.width() < NARROW
        self.fit_toolbar()
        for label in (self.status_threads, self.status_backend):  # the status line's details go first
            label.setVisible(not narrow)
        if narrow != getattr(self, "_narrow", None):
            self._narrow = narrow
            self.set_sidebar_visible(self._sidebar_wanted and not narrow)

    def _connect_bridge(self) -> None:
        b = self.bridge
        b.modelLoading.connect(lambda e: self._load_started(e.name))
        b.modelLoaded.connect(lambda e: self._load_finished(e.summary))
        b.modelFailed.connect(self._load_failed)
        b.turnStarted.connect(self._turn_started)
        b.turnText.connect(self._turn_text)
        b.turnFinished.connect(self._turn_finished)
        b.turnFailed.connect(self._turn_failed)
        b.tokenCount.connect(self._token_count)

    # --- Models
    def load_model(self, spec: str, load_settings: LoadSettings | None = None, *, automatic: bool = False) -> None:
        """Load a model; `automatic` for one the user did not pick just now (the last one, at start-up)."""
        self._automatic_load = automatic
        self.bridge.load(spec, load_settings or self._load_settings(spec), automatic=automatic)

    def _load_settings(self, model: str | None = None) -> LoadSettings:
        return load_settings(self.defaults, model)  # with the model's own cache settings, when it has them

    def _load_started(self, name: str) -> None:
        self.load_progress.show()
        self.status_model.setText(f"Loading {name}…")

    def _load_finished(self, summary) -> None:
        self.load_progress.hide()
        QTimer.singleShot(0, self, self.fit_toolbar)  # the picker's size buttons may have changed its width
        self.model = _summary_dict(summary)
        self.base_notice.show_for(self.model)
        self._update_status()
        draft_error = (self.model.get("draft") or {}).get("error")
        if draft_error:  # the model loaded; the draft asked for did not: say why, once
            self.statusBar().showMessage(draft_error, 20_000)
        self._count_draft(self.input.edit.toPlainText())

    def _load_failed(self, event) -> None:
        self.load_progress.hide()
        if event.summary is not None:  # the previous model was put back
            self.model = _summary_dict(event.summary)
        else:
            self.model = {}
        self.base_notice.show_for(self.model)
        self._update_status()
        QMessageBox.warning(self, "Model", event.sentence)
        if getattr(self, "_automatic_load", False) and event.summary is None and event.name != "starter":
            self.load_model("starter")  # the last model cannot be reopened: start on the starter

    # --- Conversations
    def new_chat(self) -> None:
        self.current_id = None
        self.pending_chat = {}
        self.chat.clear()
        self._show_header()
        self.sidebar.select(None)
        self.show_page(0)
        self.input.edit.setFocus()
        self._count_draft(self.input.edit.toPlainText())

    def open_conversation(self, conv_id: int, message_id: int | None = None, *, show: bool = True) -> None:
        """Show a conversation (at `message_id`, a search hit, if given); `show` brings the chat to the front."""
        self.current_id = conv_id
        self.pending_chat = {}
        if message_id:
            self.services.chat.switch_branch(message_id)  # a search hit on another branch: show that branch
        conv = self.history.get_conversation(conv_id)
        self.chat.show_thread(conv, live=self.live, include=message_id, live_thinking=self.live_thinking)
        self.header.show_conversation(conv, default_prompt="")
        self.sidebar.select(conv_id)
        if show:
            self.show_page(0)
        if message_id and message_id in self.chat.widgets:
            widget = self.chat.widgets[message_id]
            self.chat._follow = False
            # With the widget as context, the timer dies with it if the view is rebuilt first.
            QTimer.singleShot(50, widget, lambda: self.chat.ensureWidgetVisible(widget))
        self._remember_conversation(conv_id)
        self._count_draft(self.input.edit.toPlainText())

    def _remember_conversation(self, conv_id: int | None) -> None:
        """The conversation the app reopens on next time."""
        if self.settings_store.get(LAST_CONVERSATION) != conv_id:
            try:
                self.settings_store.set(LAST_CONVERSATION, conv_id)
            except (OSError, UserError) as exc:  # a read-only data directory: the app still works
                log.warning("cannot remember the open conversation: %s", exc)

    def _show_settings_notices(self) -> None:
        """A settings file's values that were replaced by defaults: said above the chat, once each."""
        for text in self.settings_store.take_notices():
            self.notices.add_session_notice(text)

    def _reopen_last_conversation(self) -> None:
        conv_id = self.settings_store.get(LAST_CONVERSATION)
        if not isinstance(conv_id, int):
            return
        try:
            self.open_conversation(conv_id)
        except UserError as exc:  # deleted meanwhile (from the CLI, say): start on a new chat
            log.info("not reopening conversation %s: %s", conv_id, exc)
            self.current_id = None
            self.chat.clear()

    def _deleted(self, conv_id: int) -> None:
        if conv_id == self.current_id:
            self.new_chat()
            self._remember_conversation(None)

    def current_settings(self) -> GenerationSettings:
        conv = self.history.get_conversation(self.current_id) if self.current_id else None
        return generation_settings(self.defaults, conv.settings if conv else self.pending_chat.get("settings"))

    def new_chat_prompt(self) -> str:
        """The system prompt a new chat starts with: its own, if one was set in its header, else the default."""
        if "system_prompt" in self.pending_chat:
            return self.pending_chat["system_prompt"]
        return self.defaults.get("system_prompt") or ""

    # --- Sending
    def send(self, text: str) -> None:
        if self.generating or not self.model:
            if not self.model:
                QMessageBox.information(self, "Model", "The model is still loading; try again in a moment.")
                self.input.edit.setPlainText(text)
            return
        images = self.input.tray.take()
        if images and self.model.get("vision") is False:
            # Said at once, before anything is saved: the text and the images stay where they were.
            self.input.edit.setPlainText(text)
            self.input.tray.put_back(images)
            self.input.tray.say(f"{self.model.get('name')} cannot see images: it has no image projector. Choose a "
                                "model marked as seeing images, or remove the images.")
            return
        self._sent = (text, images)
        if self.base_notice.completion_mode:  # a base model continues the text itself: no chat template
            if images:  # a completion takes text only: the images stay where they were, not lost
                self.input.edit.setPlainText(text)
                self.input.tray.put_back(images)
                self.input.tray.say("Completion mode continues text only; remove the images, or switch to chat "
                                    "to send them.")
                return
            self.current_id = None
            self.chat.clear()
            self.sidebar.select(None)
            self._submit(TurnRequest(kind="complete", text=text, settings=self.current_settings()))
            return
        new = self.current_id is None
        if new:
            self.chat.clear()
        self._submit(TurnRequest(kind="send", text=text, conversation_id=self.current_id,
                                 system_prompt=(self.new_chat_prompt() or None) if new else None,
                                 conversation_settings=(self.pending_chat.get("settings") or None) if new else None,
                                 settings=self.current_settings(), images=images or None))

    def _read_image(self, ref):
        """A message's image from the history's files (for its thumbnail and larger view)."""
        from assistant.images import ImageAttachment

        return ImageAttachment(self.history.image_data(ref), ref.sha256, ref.mime, ref.name, ref.width, ref.height)

    def regenerate(self, reply_id: int) -> None:
        if not self.generating and self.model:
            self._submit(TurnRequest(kind="regenerate", message_id=reply_id, conversation_id=self.current_id,
                                     settings=self.current_settings()))

    def edit_message(self, message_id: int, text: str) -> None:
        if not self.generating and self.model and text.strip():
            self._submit(TurnRequest(kind="edit", message_id=message_id, text=text.strip(),
                                     conversation_id=self.current_id, settings=self.current_settings()))

    def continue_reply(self, reply_id: int) -> None:
        """A stopped reply goes on: a new version of it that starts with its text."""
        if not self.generating and self.model:
            self._submit(TurnRequest(kind="continue", message_id=reply_id, conversation_id=self.current_id,
                                     settings=self.current_settings()))

    def switch_branch(self, message_id: int) -> None:
        self.services.chat.switch_branch(message_id)
        self.open_conversation(self.current_id)

    def stop(self) -> None:
        if self._turn is not None:
            self._turn.cancel()

    def _submit(self, request: TurnRequest) -> None:
        self.generating = True
        self.input.set_generating(True)
        self._turn = self.bridge.submit(request)

    # --- Streaming replies (events from the chat service, any front end's)
    def _turn_started(self, event) -> None:
        if event.reply_id is None:
            return
        self.live[event.reply_id] = event.initial_text  # a continued reply starts with its earlier part
        mine = self._turn is not None and event.request_id == self._turn.id
        if mine and self.current_id is None:  # the first message made a new conversation
            self.current_id = event.conversation_id
            self.pending_chat = {}  # saved with it
            self.sidebar.refresh()
            self.sidebar.select(event.conversation_id)
            self._remember_conversation(event.conversation_id)
            self._show_header()
        if event.conversation_id != self.current_id:
            return
        plain_send = mine and self._turn.request.kind == "send"
        if plain_send and event.user_message is not None and event.user_message.id not in self.chat.widgets:
            # A plain send: add the two new messages; nothing is read back from the database.
            self.chat.add_message(event.user_message)
            self.chat.add_message(_placeholder(event))
            self.chat._follow = True
        else:  # a regenerate, an edit or a continue made a new branch: show it
            self.open_conversation(event.conversation_id)

    def _turn_text(self, event) -> None:
        widget = self.chat.widgets.get(event.reply_id) if event.conversation_id == self.current_id else None
        if getattr(event, "kind", "answer") == "thinking":  # folded above the answer, never in it
            self.live_thinking[event.reply_id] = self.live_thinking.get(event.reply_id, "") + event.text
            if widget is not None:
                widget.append_thinking(event.text, event.tokens)
            return
        self.live[event.reply_id] = self.live.get(event.reply_id, "") + event.text
        if widget is not None:
            widget.append(event.text)

    def _turn_finished(self, event) -> None:
        self.live.pop(event.reply_id, None)
        self.live_thinking.pop(event.reply_id, None)
        mine = self._turn is not None and event.request_id == self._turn.id
        stats = event.stats
        if mine:
            self._turn = None
            self.generating = False
            self.input.set_generating(False)
            if stats.get("stop_reason") in ("eos", "length", "stopped", "repetition") and self.model:
                # Only a model that has loaded and answered becomes the one reopened at start-up.
                self.settings_store.set("last_model", self.model.get("name"))
        if event.conversation_id and event.conversation_id == self.current_id:
            widget = self.chat.widgets.get(event.reply_id)
            if widget is not None and event.message is not None:
                widget.finish(event.message.stats or stats, event.message.status,
                              getattr(event.message, "thinking", None))
                if mine:
                    self.chat.show_newest()
            ctx = stats.get("context") or {}
            if ctx.get("used_tokens") is not None:
                note = ctx.get("message", "") if ctx.get("applied") else ""
                self.input.show_context(ctx["used_tokens"], stats.get("n_ctx") or 0, note)
        if event.conversation_id:
            self.sidebar.refresh()
            if event.conversation_id == self.current_id:
                self._show_header()  # the first reply names the conversation
        if self.stats_view is not None and self.pages.currentWidget() is self.stats_view:
            self.stats_view.refresh()

    def _turn_failed(self, event) -> None:
        if self._turn is not None and event.request_id == self._turn.id:
            sent, self._sent = self._sent, None
            plain_send = self._turn.request.kind == "send"
            self._turn = None
            self.generating = False
            self.input.set_generating(False)
            if plain_send and sent is not None and event.code in ("invalid_image", "model_cannot_see"):
                # Nothing was saved: the message and its images wait in the box again, with the one sentence.
                if not self.input.edit.toPlainText():
                    self.input.edit.setPlainText(sent[0])
                self.input.tray.put_back(sent[1])
                self.input.tray.say(event.sentence)
                return
            QMessageBox.warning(self, "Reply", event.sentence)

    # --- Context meter
    def _count_draft(self, draft: str) -> None:
        if not self.model or self.generating:
            return
        messages = []
        if self.current_id:
            try:
                messages = self.history.get_conversation(self.current_id).chat_messages()
            except UserError as exc:  # deleted by another process meanwhile: no count until it is gone
                log.info("no token count for conversation %s: %s", self.current_id, exc)
                return
        elif self.new_chat_prompt():
            messages = [{"role": "system", "content": self.new_chat_prompt()}]
        draft_message: dict = {"role": "user", "content": draft}
        if self.input.tray.images and self.model.get("vision"):
            draft_message["images"] = list(self.input.tray.images)  # their tokens count before sending
        if self.current_id and self.model.get("vision"):
            messages = self._with_history_images(messages)
        messages = messages + [draft_message]
        self.bridge.count_draft(messages)

    def _with_history_images(self, messages: list[dict]) -> list[dict]:
        """The conversation's messages with their images, so the meter counts image tokens too."""
        try:
            thread = [m for m in self.history.get_conversation(self.current_id).thread if m.role != "system"]
        except UserError:
            return messages
        system = [m for m in messages if m["role"] == "system"]
        out = list(system)
        for m in thread:
            message: dict = {"role": m.role, "content": m.content}
            if m.images:
                try:
                    message["images"] = [self._read_image(r) for r in m.images]
                except UserError as exc:
                    log.info("the meter counts without an image: %s", exc)
            out.append(message)
        return out

    def _token_count(self, used: int, limit: int) -> None:
        policy = self.current_settings().context_policy.value.replace("_", " ")
        note = f"when full: {policy}" if used >= limit * 0.85 else ""
        self.input.show_context(used, limit, note)

    # --- Pages and dialogs
    def show_page(self, index: int) -> None:
        if index == 1 and self.stats_view is None:
            from ui.stats_view import StatsView

            self.benchmarks = BenchmarkBridge(self.services.stats, self)
            self.stats_view = StatsView(self.services.stats, self.benchmarks, load_settings=self._load_settings)
            # A model installed (or removed) meanwhile is in the Benchmarks list at once, no Refresh needed.
            self.library.installedChanged.connect(lambda _index: self.stats_view.refresh_models())
            self.pages.addWidget(self.stats_view)
        if index == 1:
            self.stats_view.refresh()
        self.pages.setCurrentWidget(self.stats_view if index == 1 else self.pages.widget(0))
        (self.stats_action if index == 1 else self.chat_action).setChecked(True)

    def show_server_page(self) -> None:
        self.pages.setCurrentWidget(self.server_page)
        self.server_action.setChecked(True)

    def show_compare(self) -> None:
        """The Compare page: one prompt on several models side by side (built on first show)."""
        if self.compare_page is None:
            from ui.compare_page import ComparePage

            self.compare_page = ComparePage(self.services, current_model=lambda: self.model,
                                            load_settings=self._load_settings,
                                            generation_settings=lambda: generation_settings(self.defaults),
                                            parent=self)
            self.pages.addWidget(self.compare_page)
        self.compare_page.refresh()
        self.pages.setCurrentWidget(self.compare_page)
        self.compare_action.setChecked(True)

    def _completion_mode(self, on: bool) -> None:
        self.input.edit.setPlaceholderText("Text for the model to continue (text completion, no chat template)"
                                           if on else "Message (Enter to send, Shift+Enter for a new line)")

    def make_settings_dialog(self) -> SettingsDialog:
        conv = self.history.get_conversation(self.current_id) if self.current_id else None
        return SettingsDialog(self.defaults, conv.settings if conv else None,
                              gpu=bool(self.model.get("gpu_offload")), draft_offer=self._draft_offer(), parent=self)

    def _draft_offer(self) -> str | None:
        """For the loaded model: the installed size of its family that can draft for it, with the gain to expect."""
        from assistant.engine.draft_plan import draft_offer

        try:
            offer = draft_offer(self.model.get("name")) if self.model else None
        except UserError as exc:  # the installed list cannot be read just now: no offer, no harm
            log.warning("draft offer: %s", exc)
            return None
        return offer.sentence if offer else None

    def open_settings(self) -> None:
        """The defaults for new chats; the view you were on stays."""
        dialog = self.make_settings_dialog()
        if dialog.exec():
            self.apply_settings(dialog.result_settings()[0])
        dialog.deleteLater()

    def apply_settings(self, defaults: dict) -> None:
        old_load = self._load_settings()
        self.defaults = defaults
        save_preferences(self.settings_store, self.defaults)
        self.chat.set_stats_mode(self.defaults.get("stats_line", "always"))
        self.set_theme(self.defaults.get("theme", "system"))
        if self.current_id is None:
            self._show_header()
        if self._load_settings() != old_load and self.model:
            self.load_model(self.model["name"])

    def make_conversation_settings_dialog(self, focus_prompt: bool = False) -> ConversationSettingsDialog:
        """This chat's dialog; for a new chat, over the settings chosen for it so far."""
        if self.current_id is None:
            return ConversationSettingsDialog(self.defaults, self.pending_chat.get("settings"), title="New chat",
                                              system_prompt=self.new_chat_prompt(), new_chat=True,
                                              focus_prompt=focus_prompt, parent=self)
        conv = self.history.get_conversation(self.current_id)
        return ConversationSettingsDialog(self.defaults, conv.settings, title=conv.display_title,
                                          system_prompt=conv.system_prompt, focus_prompt=focus_prompt, parent=self)

    def open_conversation_settings(self, focus_prompt: bool = False) -> None:
        """This chat's own system prompt and settings (its overrides of the defaults)."""
        dialog = self.make_conversation_settings_dialog(focus_prompt)
        if dialog.exec():
            self.apply_conversation_settings(dialog)
        dialog.deleteLater()

    def apply_conversation_settings(self, dialog: ConversationSettingsDialog) -> None:
        """Keep what the chat's dialog chose: with the conversation (through the chat service), or, for a
        new chat, until its first message creates it."""
        settings = dialog.result_settings()
        if self.current_id is None:
            self.pending_chat["settings"] = settings
            if dialog.prompt_changed():
                self.pending_chat["system_prompt"] = dialog.result_system_prompt()
        else:
            try:
                self.services.chat.set_conversation_settings(self.current_id, settings)
                if dialog.prompt_changed():
                    self.services.chat.set_system_prompt(self.current_id, dialog.result_system_prompt())
            except UserError as exc:  # a read-only or busy history: nothing changed, say why
                QMessageBox.warning(self, "This chat", str(exc))
        self._show_header()
        self._count_draft(self.input.edit.toPlainText())

    def _show_header(self) -> None:
        conv = self.history.get_conversation(self.current_id) if self.current_id else None
        self.header.show_conversation(conv, default_prompt=self.new_chat_prompt(),
                                      pending=self.pending_chat.get("settings"))

    def _renamed(self, conv_id: int) -> None:
        if conv_id == self.current_id:
            self._show_header()

    def set_theme(self, theme: str) -> None:
        """Switch light/dark/system now, replies' code colours included; the page shown stays."""
        from PySide6.QtWidgets import QApplication

        from ui.theme import apply_theme, repolish

        dark = apply_theme(QApplication.instance(), theme)
        self.chat.set_dark(dark)
        if self.compare_page is not None:
            self.compare_page.set_dark(dark)
        repolish(self)
        self._apply_icons()
        self.header.settings_button.setIcon(icon("conversation"))
        self.base_notice.apply_icons()
        self.model_picker.apply_icons()
        self.sidebar.apply_icons()
        if self.sidebar.search.text().strip():
            self.sidebar.refresh()  # search rows are drawn in the palette's colours
        if self.current_id:
            self.open_conversation(self.current_id, show=False)
        else:
            self.chat.clear()

    def make_model_manager(self) -> ModelManager:
        return ModelManager(self.library, self.load_model, parent=self)

    def open_model_manager(self) -> None:
        self.make_model_manager().exec()

    # --- Status bar
    def _update_status(self) -> None:
        m = self.model
        if m:
            draft = m.get("draft") or {}
            drafting = ("" if not draft or draft.get("error") else
                        " · draft: prompt lookup" if draft.get("kind") == "lookup" else f" · draft: {draft.get('model')}")
            self.status_model.setText(f"{m.get('name')} · {m.get('quant')}{drafting}")
            self.status_model.setToolTip(draft.get("error") or "")
            self.status_threads.setText(f"{m.get('n_threads')} threads")
            self.status_backend.setText(m.get("backend", "CPU"))
        else:
            self.status_model.setText("No model")
        app = psutil.Process().memory_info().rss
        summary = self.services.chat.summary() if m else None  # the model's process, measured from outside
        model_rss = (summary.memory or {}).get("rss_bytes") if summary else None
        vram = (summary.memory or {}).get("vram_bytes") if summary else None
        text = f"RAM: model {format_bytes(model_rss)} · app {format_bytes(app)}" if model_rss else f"RAM {format_bytes(app)}"
        self.status_ram.setText(text + (f" · VRAM {format_bytes(vram)}" if vram else ""))
        self.status_ram.setToolTip("Resident memory of the model's process and of the window itself")

    # --- Closing: the reply in flight stops (its partial text is saved), the engine is freed
    def closeEvent(self, event) -> None:
        self._ram_timer.stop()
        self.sidebar.stop_watching()
        self.server_page.shutdown()  # API clients are cancelled before the engine goes
        self.bridge.close()
        self.library.close()
        self.services.close()  # downloads pause (they resume next time)
        wait_for_background(3.0)  # let background calls finish their writes to the data dir
        super().closeEvent(event)


def _summary_dict(summary) -> dict:
    """What the window shows about the loaded model, as plain data."""
    d = summary.to_dict()
    d["backend"], d["gpu_offload"] = summary.backend.get("kind", "CPU"), summary.backend.get("gpu_offload", False)
    return d


def _placeholder(event) -> Message:
    """The reply of a turn that has just started, shown while it streams."""
    return Message(id=event.reply_id, conversation_id=event.conversation_id, parent_id=None, role="assistant",
                   content="", status="streaming", created_at="", updated_at="")
