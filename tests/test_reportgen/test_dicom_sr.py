"""DICOM SR out: a TID 1500 measurement report that dciodvfy accepts and highdicom reads
back equal to the JSON report, on phantom DICOM and on a real Siemens study."""

from __future__ import annotations

import os
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import assert_refused
from helpers.phantom_dicom import write_phantom_export

from ontology.concepts import SYSTEM_URIS, default_concepts
from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.io.dicom import source_headers
from reportgen.model.generate import GenerateOptions
from reportgen.model.generators import GeneratorChoice
from reportgen.render.dicom_sr import SCHEME, code_value
from reportgen.render.output import write_report
from reportgen.report import Report, load_template
from reportgen.synth import SynthOptions, synth_dataset

PROSTATEX = os.path.join(os.path.dirname(__file__), "..", "data", "prostatex", "ProstateX-0000")


def dciodvfy_errors(path) -> list[str]:
    """dciodvfy's error lines for one file (Debian's dicom3tools, installed by .ci/run)."""
    if shutil.which("dciodvfy") is None:
        if os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
            pytest.fail("dciodvfy (Debian package dicom3tools) is not installed")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def drafted(tmp_path_factory):
    """A breast phantom exported as DICOM, drafted once, written as JSON and as SR."""
    root = tmp_path_factory.mktemp("sr")
    synth_dataset(root / "ph", 1, SynthOptions(domain="breast", seed=5))
    row = read_manifest(root / "ph")[0]
    write_phantom_export(root / "ph" / row["dir"], row["text"]["en"], root / "dicom")
    study = load_study(root / "dicom")
    generator = GeneratorChoice(None, "birads_mri")(None, None, False)
    report = generator.draft(study, GenerateOptions(explain=False)).report
    write_report(root / "report.sr.dcm", report, "dicom-sr", source=source_headers(study))
    return root, study, report


def test_sr_passes_dciodvfy(drafted):
    root, _, _ = drafted
    assert dciodvfy_errors(root / "report.sr.dcm") == []


def _groups_by_id(sr) -> dict[str, object]:
    groups = sr.content.get_volumetric_roi_measurement_groups()
    groups += sr.content.get_image_measurement_groups()  # the study-level group: no region
    return {str(g.tracking_identifier).removeprefix("finding "): g for g in groups}


def _code(concept_id: str):
    primary = default_concepts()[concept_id].primary
    return code_value(primary.code), SCHEME[primary.system_key]


def test_sr_reads_back_equal_to_the_json(drafted):
    root, study, report = drafted
    template = load_template(report.template.id)
    sr = hd.sr.srread(root / "report.sr.dcm")
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    assert sr.StudyInstanceUID == source_headers(study)[0].StudyInstanceUID
    groups = _groups_by_id(sr)
    assert report.findings and set(groups) == {"study", *(f.id for f in report.findings)}
    for key, values, derived in [("study", report.fields, report.derived)] + [
        (f.id, f.fields, f.derived) for f in report.findings
    ]:
        group = groups[key]
        read = {
            (q.name.value, q.name.scheme_designator): (q.value.value, q.value.scheme_designator)
            for q in group.get_qualitative_evaluations()
        }
        sizes = {m.name.value: (m.value, m.unit.value) for m in group.get_measurements()}
        for field_id, value in values.items():
            spec = template.field(field_id)
            name = _code(spec.concept)
            if spec.type == "number":
                assert sizes[name[0]] == (pytest.approx(float(value.value)), spec.unit)
            else:  # the JSON value's own code, in the same coding scheme
                system = next(k for k, uri in SYSTEM_URIS.items() if uri == value.concept.system)
                expected = (code_value(value.concept.code), SCHEME[system])
                assert read[name] == expected, field_id
        for derived_id, value in derived.items():
            assert read[_code(template.derived(derived_id).concept)] == _code(str(value.value))
        assert len(read) + len(sizes) == len(values) + len(derived)  # nothing more, nothing less


def test_sr_locates_each_finding_in_patient_coordinates(drafted):
    root, study, report = drafted
    sr = hd.sr.srread(root / "report.sr.dcm")
    frame = source_headers(study)[0].FrameOfReferenceUID
    groups = _groups_by_id(sr)
    for finding in report.findings:
        roi = groups[finding.id].roi
        assert roi.graphic_type == hd.sr.GraphicTypeValues3D.ELLIPSOID
        assert roi.frame_of_reference_uid == frame
        box = finding.evidence.box
        centre_ras = (np.asarray(box.min_mm) + np.asarray(box.max_mm)) / 2
        centre_lps = centre_ras * np.array([-1, -1, 1])
        assert np.allclose(roi.graphic_data.mean(axis=0), centre_lps, atol=0.01)


def test_sr_carries_the_notice_and_the_model(drafted):
    root, _, report = drafted
    ds = pydicom.dcmread(root / "report.sr.dcm")
    texts = [item.TextValue for item in ds.ContentSequence if item.ValueType == "TEXT"]
    assert report.notice in texts
    assert "NOT FOR CLINICAL USE" in ds.SeriesDescription
    observer = {
        item.ConceptNameCodeSequence[0].CodeMeaning: item.get("TextValue")
        for item in ds.ContentSequence
    }
    assert report.provenance.model_name in observer["Device Observer Model Name"]


def test_sr_of_a_real_prostate_study_under_force(tmp_path, cli):
    out = tmp_path / "px.sr.dcm"
    result = cli(
        "generate", PROSTATEX, "--force", "--format", "dicom-sr", "--out", out, "--no-explain"
    )
    assert result.code == 0, result.err
    assert dciodvfy_errors(out) == []
    assert "ProstateX" not in result.err  # its pseudonymous name stays in the study, not the log
    ds = pydicom.dcmread(out)
    texts = [item.TextValue for item in ds.ContentSequence if item.ValueType == "TEXT"]
    assert any("--force" in t and "PROSTATE" in t for t in texts)
    meanings = {
        item.ConceptNameCodeSequence[0].CodeMeaning
        for group in ds.ContentSequence
        if group.ValueType == "CONTAINER"
        for item in group.ContentSequence
        for item in item.get("ContentSequence", [])
    }
    assert not {m for m in meanings if "enhancement" in m or "kinetic" in m}  # no DCE here
    referenced = {
        series.SeriesInstanceUID
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
    }
    assert len(referenced) == 3  # T2W, DWI and ADC: the series the report was drafted from


def test_dicom_sr_is_refused_without_dicom_source_or_out(drafted, cli, tmp_path):
    root, _, _ = drafted
    assert_refused(
        cli(
            "generate",
            root / "ph" / "breast-s5-00000",
            "--format",
            "dicom-sr",
            "--out",
            tmp_path / "x.dcm",
        ),
        "not DICOM",
    )
    assert not (tmp_path / "x.dcm").exists()
    assert_refused(cli("generate", root / "dicom", "--format", "dicom-sr"), "--out")
    report = Report.model_validate_json(drafted[2].to_json())
    (tmp_path / "r.json").write_text(report.to_json())
    assert_refused(cli("render", tmp_path / "r.json", "--format", "dicom-sr"), "DICOM images")
