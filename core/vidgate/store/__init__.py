"""Persistent state: tasks, tokens, the ledger (SQLite or PostgreSQL)."""

from .records import TERMINAL, Attempt, LedgerEntry, TaskRecord, TokenRecord
from .store import DuplicateIdempotencyKey, InsufficientQuota, Store

__all__ = [
    "TERMINAL",
    "Attempt",
    "DuplicateIdempotencyKey",
    "InsufficientQuota",
    "LedgerEntry",
    "Store",
    "TaskRecord",
    "TokenRecord",
]
