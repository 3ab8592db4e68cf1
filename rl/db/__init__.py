"""The reward log: where drafts, clinicians' edits, signed reports and corrections live."""

from rl.db.engine import database_url, integrity_problems, open_log_engine
from rl.db.store import Conflict, DraftState, RewardLog, WorklistRow

__all__ = [
    "Conflict",
    "DraftState",
    "RewardLog",
    "WorklistRow",
    "database_url",
    "integrity_problems",
    "open_log_engine",
]
