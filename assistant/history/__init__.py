"""Chat history: every conversation, with branches and statistics, in SQLite.

The public face is `HistoryStore` and the records it returns; see store.py.
"""

from assistant.history.errors import (
    ConversationNotFound,
    HistoryBusyError,
    HistoryDamagedError,
    HistoryDiskFullError,
    HistoryError,
    HistoryIOError,
    HistoryReadOnlyError,
    ImportFormatError,
    ImportLimitError,
    MessageNotFound,
    MigrationError,
)
from assistant.history.importing import ImportLimits
from assistant.history.notices import Notice
from assistant.history.records import (
    ROLES,
    STATUSES,
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    SearchHit,
)
from assistant.history.store import CURRENT_LEAF, CheckResult, HistoryStore
from assistant.history.streaming import StreamingReply

__all__ = [
    "CURRENT_LEAF",
    "ROLES",
    "STATUSES",
    "CheckResult",
    "Conversation",
    "ConversationNotFound",
    "ConversationSummary",
    "HistoryBusyError",
    "HistoryDamagedError",
    "HistoryDiskFullError",
    "HistoryError",
    "HistoryIOError",
    "HistoryReadOnlyError",
    "HistoryStore",
    "ImportFormatError",
    "ImportLimitError",
    "ImportLimits",
    "ImportResult",
    "Message",
    "MessageNotFound",
    "MigrationError",
    "Notice",
    "SearchHit",
    "StreamingReply",
]
