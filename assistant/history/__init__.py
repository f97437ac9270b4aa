"""Chat history: every conversation, with branches and statistics, in SQLite.

The public face is `HistoryStore` and the records it returns; see store.py.
"""

from assistant.history.errors import (
    ConversationNotFound,
    HistoryBusyError,
    HistoryError,
    ImportFormatError,
    MessageNotFound,
    MigrationError,
)
from assistant.history.records import (
    ROLES,
    STATUSES,
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    SearchHit,
)
from assistant.history.store import CURRENT_LEAF, HistoryStore
from assistant.history.streaming import StreamingReply

__all__ = [
    "CURRENT_LEAF",
    "ROLES",
    "STATUSES",
    "Conversation",
    "ConversationNotFound",
    "ConversationSummary",
    "HistoryBusyError",
    "HistoryError",
    "HistoryStore",
    "ImportFormatError",
    "ImportResult",
    "Message",
    "MessageNotFound",
    "MigrationError",
    "SearchHit",
    "StreamingReply",
]
