"""`reportgen pacs watch`: draft every new MR study on the PACS and store its SR back.

Each poll asks the PACS for its MR studies (C-FIND). A study is taken once it has
settled (the same number of instances at two polls in a row: a scanner sends a study over
minutes), pulled over C-GET into a temporary folder, drafted the one way every command
drafts (`draft_checked`: the model by anatomy or as named, refused if it does not fit),
and its DICOM SR is stored back into the same study (C-STORE). What happened to each
study is kept in a small SQLite file: drafted and refused studies are never taken again,
and a study whose pull, draft or store failed is retried at later polls, up to
`max_attempts`, across restarts. Progress lines name studies by their pseudonymous id,
never by a UID or a patient attribute.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reportgen.errors import PacsError, ReportgenError
from reportgen.io.dicom_headers import pseudonymous_uid_id
from reportgen.model.drafting import draft_study
from reportgen.model.fitness import StudyMismatch
from reportgen.model.generate import GenerateOptions
from reportgen.model.generators import GeneratorChoice
from reportgen.pacs.dimse import PacsNode, find_studies, get_study, store
from reportgen.render.output import write_report

log = logging.getLogger(__name__)
DONE, REFUSED, RETRY, FAILED = "drafted", "refused", "retry", "failed"
FINAL = (DONE, REFUSED, FAILED)


@dataclass
class StudyOutcome:
    study_id: str  # pseudonymous
    status: str  # drafted | refused | retry | failed
    detail: str


class WatchState:
    """What happened to each study the watcher has seen, in a SQLite file that survives
    restarts (each change is committed at once)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS studies (study_uid TEXT PRIMARY KEY, study_id TEXT, "
            "status TEXT, attempts INTEGER, detail TEXT, updated TEXT)"
        )
        self.db.commit()

    def get(self, study_uid: str) -> tuple[str, int] | None:
        row = self.db.execute(
            "SELECT status, attempts FROM studies WHERE study_uid = ?", (study_uid,)
        ).fetchone()
        return None if row is None else (row[0], int(row[1]))

    def record(self, study_uid: str, outcome: StudyOutcome, attempts: int) -> None:
        self.db.execute(
            "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(study_uid) DO UPDATE SET "
            "status = excluded.status, attempts = excluded.attempts, detail = excluded.detail, "
            "updated = excluded.updated",
            (
                study_uid,
                outcome.study_id,
                outcome.status,
                attempts,
                outcome.detail,
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )
        self.db.commit()

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM studies GROUP BY status"))

    def close(self) -> None:
        self.db.close()


class Watcher:
    """One PACS, one state file, one way of choosing the model."""

    def __init__(
        self,
        node: PacsNode,
        state: WatchState,
        choose: GeneratorChoice,
        settle_polls: int = 1,
        max_attempts: int = 5,
        report: Callable[[str], None] = print,
    ):
        self.node, self.state, self.choose = node, state, choose
        self.settle_polls, self.max_attempts, self.report = settle_polls, max_attempts, report
        self._seen: dict[str, tuple[int, int]] = {}  # uid -> (instances, polls unchanged)

    def poll(self) -> list[StudyOutcome]:
        """One pass: every settled, unfinished MR study is drafted (or refused, or queued
        for a retry)."""
        outcomes = []
        for found in find_studies(self.node):
            uid = str(found.StudyInstanceUID)
            if "MR" not in _modalities(found):
                continue
            known = self.state.get(uid)
            if known is not None and known[0] in FINAL:
                continue
            if not self._settled(uid, int(found.get("NumberOfStudyRelatedInstances", 0) or 0)):
                continue
            attempts = (known[1] if known else 0) + 1
            outcome = self._draft(uid, attempts)
            self.state.record(uid, outcome, attempts)
            self.report(f"{outcome.study_id}: {outcome.status} ({outcome.detail})")
            outcomes.append(outcome)
        return outcomes

    def run(self, interval_s: float, polls: int | None = None) -> None:
        """Poll every `interval_s` seconds, `polls` times (None: until interrupted). A PACS
        that cannot be reached is retried at the next poll."""
        done = 0
        while polls is None or done < polls:
            try:
                self.poll()
            except PacsError as exc:
                self.report(f"poll failed: {exc}; retrying in {interval_s:g} s")
            done += 1
            if polls is None or done < polls:
                time.sleep(interval_s)

    def _settled(self, uid: str, instances: int) -> bool:
        previous, unchanged = self._seen.get(uid, (-1, -1))
        unchanged = unchanged + 1 if previous == instances else 0
        self._seen[uid] = (instances, unchanged)
        return unchanged >= self.settle_polls

    def _draft(self, uid: str, attempts: int) -> StudyOutcome:
        study_id = pseudonymous_uid_id(uid)
        try:
            with tempfile.TemporaryDirectory(prefix="reportgen-watch-") as tmp:
                dicom = Path(tmp) / "dicom"
                get_study(self.node, uid, dicom)
                checked = draft_study(
                    dicom, self.choose, GenerateOptions(explain=False), with_headers=True
                )
                study, source = checked.study, checked.source
                sr = Path(tmp) / "report.sr.dcm"
                write_report(
                    sr,
                    checked.draft.report,
                    "dicom-sr",
                    template=checked.generator.template,
                    source=source,
                )
                store(self.node, [sr])
            template = checked.generator.template.id
            return StudyOutcome(study.study_id, DONE, f"{template} SR stored")
        except PacsError as exc:  # the network or the PACS: worth another try
            status = FAILED if attempts >= self.max_attempts else RETRY
            return StudyOutcome(study_id, status, f"attempt {attempts}: {exc}")
        except StudyMismatch as exc:  # watch has no --force: say why, not what it lacks
            return StudyOutcome(study_id, REFUSED, exc.reason)
        except ReportgenError as exc:  # the study itself: another try gives the same answer
            return StudyOutcome(study_id, REFUSED, str(exc))
        except Exception as exc:  # an internal fault: logged, retried, never fatal to the watch
            log.exception("drafting %s failed", study_id)
            status = FAILED if attempts >= self.max_attempts else RETRY
            return StudyOutcome(study_id, status, f"attempt {attempts}: {type(exc).__name__}")


def _modalities(found) -> set[str]:
    """ModalitiesInStudy as a set (pydicom gives a str for one value, a list for several)."""
    value = found.get("ModalitiesInStudy", "")
    return {str(value)} if isinstance(value, str) else {str(v) for v in value}
