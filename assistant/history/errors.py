"""Failures of the history store, each one a sentence a person can act on."""

from common.errors import UserError


class HistoryError(UserError):
    """Something went wrong reading or writing the chat history."""


class ConversationNotFound(HistoryError):
    def __init__(self, conversation_id):
        self.conversation_id = conversation_id
        super().__init__(
            f"There is no conversation {conversation_id} in the chat history; "
            "`assistant history list` shows the saved ones."
        )


class MessageNotFound(HistoryError):
    def __init__(self, message_id):
        self.message_id = message_id
        super().__init__(f"There is no message {message_id} in the chat history.")


class MigrationError(HistoryError):
    """A schema upgrade failed; the database was rolled back to how it was."""

    def __init__(self, path, step: str, reason: str):
        self.path = str(path)
        self.step = step
        self.reason = reason
        super().__init__(
            f"Could not upgrade the chat history database {self.path}: step {step!r} failed "
            f"({reason}). The database was left exactly as it was; nothing was lost."
        )


class HistoryBusyError(HistoryError):
    """Another process held the database for longer than the busy timeout."""


class ImportFormatError(HistoryError):
    """A JSON export that cannot be imported; nothing was changed."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"Cannot import this history file: {reason}. Nothing was changed.")


class HistoryDamagedError(HistoryError):
    """SQLite reported the file damaged (corrupt, or not a database at all)."""


class HistoryReadOnlyError(HistoryError):
    """Nothing can be written: a read-only folder or file, or a full disk at open."""


class HistoryDiskFullError(HistoryError):
    """A write failed for want of disk space; nothing saved before was touched."""


class HistoryIOError(HistoryError):
    """The operating system reported an input/output error for the database file."""


class ImportLimitError(ImportFormatError):
    """An import larger, deeper or wider than the importer reads; nothing was changed."""
