"""The own-data journey as a hospital team walks it, in miniature.

A DICOM export with one folder per study and its free-text report.txt (phantoms written
out as a hospital would: images and text, never their truth) -> `ingest-archive`
(de-identified study folders, each report parsed into report.json) -> `pretrain` ->
`train` -> `evaluate`. docs/report_model.md ("Train on your own studies") walks the same commands.
"""

from __future__ import annotations

import json

import pytest
from helpers.dicom_factory import IDENTIFIERS
from helpers.phantom_dicom import write_phantom_export

from reportgen.data import read_manifest
from reportgen.report import Report
from reportgen.synth import SynthOptions, synth_dataset


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("journey")
    synth_dataset(
        root / "phantoms",
        4,
        SynthOptions(protocol="low_resolution", domain="breast", seed=41, malignant_fraction=0.6),
    )
    rows = read_manifest(root / "phantoms")
    for i, row in enumerate(rows):  # folders named after the patient, as exports often are
        write_phantom_export(
            root / "phantoms" / row["dir"], row["text"]["en"], root / "export" / f"Doe_Jane_{i}"
        )
    (root / "export" / "Doe_Jane_9").mkdir()
    (root / "export" / "Doe_Jane_9" / "notes.txt").write_text("not a study\n")
    return root, rows


def test_ingest_archive_writes_deidentified_studies_with_parsed_reports(export, cli):
    root, rows = export
    out = root / "studies"
    result = cli("ingest-archive", root / "export", out, "--template", "birads_mri")
    assert result.code == 1  # one export folder holds no DICOM: refused, the rest ingested
    assert "refused" in result.err and "Doe_Jane_9" in result.err
    studies = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(studies) == 4 and not [p for p in out.iterdir() if p.name.startswith(".")]
    truth = {Report.model_validate(r["report"]).derived["assessment"].value for r in rows}
    parsed = set()
    for study in studies:
        assert study.name.startswith("study-")  # a hash, never the export folder's name
        names = {p.name for p in study.iterdir()}
        assert "report.json" in names and "report.txt" not in names
        assert not any(n.startswith("lesion_mask") for n in names)  # no truth travels
        report = Report.model_validate_json((study / "report.json").read_text())
        parsed.add(report.derived["assessment"].value)
        for path in study.iterdir():
            if path.suffix == ".json":
                text = path.read_text()
                assert "Doe" not in text and IDENTIFIERS["PatientID"] not in text
    assert parsed <= truth | {"birads_1", "birads_2"} and parsed & truth


def test_pretrain_train_and_evaluate_on_the_ingested_studies(export, cli):
    root, _ = export
    studies = root / "studies"
    if not studies.is_dir():
        cli("ingest-archive", root / "export", studies, "--template", "birads_mri")
    mae, model, evaluation = root / "mae", root / "model", root / "eval"
    pretrain = cli(
        "pretrain", "--data", studies, "--out", mae, "--config", "tiny", "--masking", "random",
        "--steps", "2", "--batch-size", "2", "--checkpoint-every", "2",
    )  # fmt: skip
    assert pretrain.code == 0, pretrain.err
    train = cli(
        "train", "--data", studies, "--encoder", mae, "--out", model, "--config", "tiny",
        "--steps", "4", "--batch-size", "4", "--no-roi", "--no-evidence",
        "--detector-steps", "0", "--segmenter-steps", "0",
    )  # fmt: skip
    assert train.code == 0, train.err
    result = cli("evaluate", "--data", studies, "--model", model, "--out", evaluation)
    assert result.code == 0, result.err
    metrics = json.loads((evaluation / "evaluation.json").read_text())
    drafted = metrics["results"]["model[all]"]
    assert drafted["studies"] == 4 and drafted["template_compliance"] == 1.0
