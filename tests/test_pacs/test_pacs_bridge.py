"""The PACS bridge against a real Orthanc: push, find, pull (through ingest's
de-identification), generate, push the SR back, and the watcher with its retry queue."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from conftest import assert_refused
from helpers.dicom_factory import IDENTIFIERS
from helpers.orthanc import Orthanc
from helpers.phantom_dicom import phantom_as_dicom
from helpers.server import free_port

from reportgen.errors import PacsError
from reportgen.model.generators import GeneratorChoice
from reportgen.pacs import watch as watch_module
from reportgen.pacs.dimse import PacsNode, find_studies
from reportgen.pacs.watch import Watcher, WatchState

PROSTATEX = Path(__file__).parents[1] / "data" / "prostatex" / "ProstateX-0000"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def _port(orthanc) -> list[str]:
    return ["--port", str(orthanc.dicom_port)]


def _study_uid(orthanc, cli, instances: int) -> str:
    rows = [line.split("\t") for line in cli("pacs", "find", *_port(orthanc)).out.splitlines()]
    return next(uid for uid, _, count in rows if int(count) == instances)


def test_pull_generate_push_round_trip_on_a_real_study(orthanc, cli, tmp_path):
    assert cli("pacs", "echo", *_port(orthanc)).code == 0
    pushed = cli("pacs", "push", PROSTATEX, *_port(orthanc))
    assert pushed.code == 0 and "stored 129 instance(s)" in pushed.out
    uid = _study_uid(orthanc, cli, 129)
    pulled = cli(
        "pacs", "pull", "--study", uid, "--out", tmp_path / "study",
        "--keep-dicom", tmp_path / "dicom", *_port(orthanc),
    )  # fmt: skip
    assert pulled.code == 0, pulled.err
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert {"T2W", "DWI", "ADC"} <= set(study["files"])
    for path in (tmp_path / "study").iterdir():  # the study folder identifies nobody
        if path.suffix == ".json":
            assert "ProstateX" not in path.read_text() and uid not in path.read_text()
    sr = tmp_path / "draft.sr.dcm"
    drafted = cli(
        "generate", tmp_path / "dicom", "--force", "--format", "dicom-sr", "--out", sr,
        "--no-explain",
    )  # fmt: skip
    assert drafted.code == 0, drafted.err
    assert cli("pacs", "push", sr, *_port(orthanc)).code == 0
    series = orthanc.series_of(uid)
    assert [s["Modality"] for s in series].count("SR") == 1
    assert (
        "NOT FOR CLINICAL USE"
        in next(s for s in series if s["Modality"] == "SR")["SeriesDescription"]
    )


@pytest.fixture(scope="module")
def phantom_dicom(tmp_path_factory):
    return phantom_as_dicom(tmp_path_factory.mktemp("phantom"))


def test_watch_drafts_a_new_study_once_and_retries_after_a_restart(
    orthanc, phantom_dicom, cli, tmp_path, monkeypatch
):
    assert cli("pacs", "push", phantom_dicom, *_port(orthanc)).code == 0  # report.txt passed by
    node = PacsNode(port=orthanc.dicom_port)
    uid = str(pydicom.dcmread(next((phantom_dicom / "t2w").iterdir())).StudyInstanceUID)
    assert uid in {str(f.StudyInstanceUID) for f in find_studies(node)}
    choose = GeneratorChoice(template="birads_mri")
    state_file = tmp_path / "watch.sqlite"

    def refuse_store(*args, **kwargs):
        raise PacsError("PACS went away")

    monkeypatch.setattr(watch_module, "store", refuse_store)
    lines: list[str] = []
    watcher = Watcher(node, WatchState(state_file), choose, settle_polls=1, report=lines.append)
    assert watcher.poll() == []  # first sight: not settled yet
    outcomes = {o.status for o in watcher.poll()}
    assert "retry" in outcomes and watcher.state.get(uid) == ("retry", 1)
    watcher.state.close()
    assert not any(s["Modality"] == "SR" for s in orthanc.series_of(uid))

    monkeypatch.undo()  # the PACS is back; the watcher restarts from its state file
    result = cli(
        "pacs", "watch", "--template", "birads_mri", "--state", state_file, "--polls", "1",
        "--settle-polls", "0", *_port(orthanc),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "drafted (birads_mri SR stored)" in result.err
    assert IDENTIFIERS["PatientID"] not in result.err and uid not in result.err
    assert IDENTIFIERS["StudyDate"] not in result.err  # nor the day, in any form
    day = IDENTIFIERS["StudyDate"]
    assert f"{day[:4]}-{day[4:6]}-{day[6:]}" not in result.err
    assert [s["Modality"] for s in orthanc.series_of(uid)].count("SR") == 1
    again = cli(
        "pacs", "watch", "--template", "birads_mri", "--state", state_file, "--polls", "1",
        "--settle-polls", "0", *_port(orthanc),
    )  # fmt: skip
    assert "drafted (" not in again.err  # nothing is drafted twice
    assert [s["Modality"] for s in orthanc.series_of(uid)].count("SR") == 1


def test_unreachable_pacs_is_one_line(cli):
    assert_refused(cli("pacs", "echo", "--port", free_port()), "could not be reached")


def test_push_refuses_a_named_file_that_is_not_dicom(cli, tmp_path, orthanc):
    (tmp_path / "notes.txt").write_text("not DICOM\n")
    assert_refused(cli("pacs", "push", tmp_path / "notes.txt", *_port(orthanc)), "not a DICOM")


def test_pulling_a_study_the_pacs_does_not_have_says_so(cli, tmp_path, orthanc):
    result = cli(
        "pacs", "pull", "--study", "1.2.826.0.1.3680043.8.498.123456789", "--out",
        tmp_path / "study", *_port(orthanc),
    )  # fmt: skip
    assert_refused(result, "holds no study with that StudyInstanceUID")
    assert not (tmp_path / "study").exists()
