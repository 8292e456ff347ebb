"""Persistent state: tasks, tokens, the ledger (SQLite or PostgreSQL)."""

from .records import TERMINAL, Attempt, LedgerEntry, TaskRecord, TokenRecord
from .store import DuplicateTokenName, Store
from .tasks import DuplicateIdempotencyKey, InsufficientQuota

__all__ = [
    "TERMINAL",
    "Attempt",
    "DuplicateIdempotencyKey",
    "DuplicateTokenName",
    "InsufficientQuota",
    "LedgerEntry",
    "Store",
    "TaskRecord",
    "TokenRecord",
]
