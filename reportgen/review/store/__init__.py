"""The review app's store: clinicians, the worklist, drafts, edits, signed reports, corrections
(the reward log `reportgen refine` learns from) and the audit trail. The review app owns it."""

from reportgen.review.store.engine import database_url, integrity_problems, open_log_engine
from reportgen.review.store.log import Conflict, DraftState, RewardLog, WorklistRow

__all__ = [
    "Conflict",
    "DraftState",
    "RewardLog",
    "WorklistRow",
    "database_url",
    "integrity_problems",
    "open_log_engine",
]
