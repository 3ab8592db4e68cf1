"""DICOM out: a TID 1500 measurement report (SR) and the outlines (SEG) that dciodvfy
accepts and highdicom reads back equal to the JSON report and where the lesion is, on
phantom DICOM and on a real Siemens study."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import assert_refused
from helpers.phantom_dicom import phantom_as_dicom, write_phantom_export
from scipy import ndimage

from ontology.concepts import SYSTEM_URIS, default_concepts
from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.io.dicom import source_headers
from reportgen.model.generate import GenerateOptions
from reportgen.model.generators import GeneratorChoice
from reportgen.render.dicom_codes import SCHEME, code_value
from reportgen.render.output import write_report
from reportgen.report import Report, load_template

PROSTATEX = os.path.join(os.path.dirname(__file__), "..", "data", "prostatex", "ProstateX-0000")


def dciodvfy_errors(path) -> list[str]:
    """dciodvfy's error lines for one file (Debian's dicom3tools, installed by .ci/run)."""
    if shutil.which("dciodvfy") is None:
        if os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
            pytest.fail("dciodvfy (Debian package dicom3tools) is not installed")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def write_sr_and_seg(root, study, draft) -> None:
    """A DICOM study's draft as root/report.sr.dcm and root/report.seg.dcm."""
    source = source_headers(study)
    write_report(root / "report.sr.dcm", draft.report, "dicom-sr", source=source)
    write_report(
        root / "report.seg.dcm",
        draft.report,
        "dicom-seg",
        source=source,
        outlines=draft.outlines,
        grid_affine=draft.grid_affine,
    )


@pytest.fixture(scope="module")
def drafted(tmp_path_factory):
    """A breast phantom exported as DICOM, drafted once, written as SR and as SEG."""
    root = tmp_path_factory.mktemp("sr")
    study = load_study(phantom_as_dicom(root))
    generator = GeneratorChoice(None, "birads_mri")(None, None, False)
    draft = generator.draft(study, GenerateOptions(explain=False))
    write_sr_and_seg(root, study, draft)
    return root, study, draft.report


@pytest.mark.parametrize("name", ["report.sr.dcm", "report.seg.dcm"])
def test_sr_and_seg_pass_dciodvfy(drafted, name):
    root, _, _ = drafted
    assert dciodvfy_errors(root / name) == []


def seg_points_ras(seg, segment: int) -> np.ndarray:
    """World (RAS mm) centres of one segment's pixels, from the SEG's own frame geometry."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    points = []
    for frame, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ident = group.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        if ident[0].ReferencedSegmentNumber != segment:
            continue
        origin = np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float)
        r, c = np.nonzero(pixels[frame])
        points.append(origin + c[:, None] * col_mm * iop[:3] + r[:, None] * row_mm * iop[3:])
    return np.concatenate(points) * np.array([-1.0, -1.0, 1.0])


def test_seg_outlines_the_lesion_where_the_phantom_has_it(drafted):
    root, _, report = drafted
    seg = hd.seg.segread(root / "report.seg.dcm")
    labels = [item.SegmentLabel for item in seg.SegmentSequence]
    assert labels == [f"finding {f.id}" for f in report.findings]
    truth = nib.load(root / "ph" / "breast-s5-00000" / "lesion_mask.nii.gz")
    components, n = ndimage.label(np.asarray(truth.dataobj) > 0)
    lesions = [
        nib.affines.apply_affine(truth.affine, np.argwhere(components == i))
        for i in range(1, n + 1)
    ]
    thickness = float(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness)
    row_mm, col_mm = (
        float(v)
        for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    )
    voxel_mm3 = abs(np.linalg.det(truth.affine[:3, :3]))
    for segment in range(1, len(labels) + 1):
        points = seg_points_ras(seg, segment)
        nearest = min(lesions, key=lambda p: np.linalg.norm(p.mean(0) - points.mean(0)))
        assert np.linalg.norm(nearest.mean(0) - points.mean(0)) < 3.0  # mm
        volume = len(points) * row_mm * col_mm * thickness
        assert 0.7 < volume / (len(nearest) * voxel_mm3) < 1.3


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
    distances = {f.id: f.evidence.nipple_distance_mm for f in report.findings if f.evidence}
    assert any(d is not None for d in distances.values())  # a breast finding's, measured
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
        extra = 0
        if distances.get(key) is not None:  # RadElement "distance from landmark" (nipple)
            assert sizes[_code("nipple_distance")[0]] == (
                pytest.approx(round(distances[key], 1)),
                "mm",
            )
            extra = 1
        # nothing more, nothing less
        assert len(read) + len(sizes) == len(values) + len(derived) + extra


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


def test_sr_and_seg_of_a_real_prostate_study_under_force(tmp_path, cli):
    out = tmp_path / "px.sr.dcm"
    result = cli(
        "generate", PROSTATEX, "--force", "--format", "dicom-sr", "--out", out, "--no-explain"
    )
    assert result.code == 0, result.err
    assert dciodvfy_errors(out) == []
    seg_out = tmp_path / "px.seg.dcm"
    seg_result = cli(
        "generate",
        PROSTATEX,
        "--force",
        "--format",
        "dicom-seg",
        "--out",
        seg_out,
        "--no-explain",
    )
    assert seg_result.code == 0, seg_result.err
    assert dciodvfy_errors(seg_out) == []
    seg = hd.seg.segread(seg_out)
    t2_axial = {  # the SEG lies on the axial T2 TSE's frames
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
        for p in (Path(PROSTATEX) / "4.000000-t2tsetra-00702").iterdir()
    }
    referenced = {
        ref.ReferencedSOPInstanceUID
        for group in seg.PerFrameFunctionalGroupsSequence
        for ref in group.DerivationImageSequence[0].SourceImageSequence
    }
    assert referenced and referenced <= t2_axial
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


def test_batch_writes_one_sr_per_dicom_study_and_one_study_never_mixes_two(drafted, cli, tmp_path):
    root, _, _ = drafted
    row = read_manifest(root / "ph")[0]
    for name in ("first", "second"):  # the same phantom exported twice: two studies
        write_phantom_export(root / "ph" / row["dir"], row["text"]["en"], tmp_path / "in" / name)
    assert_refused(cli("inspect", tmp_path / "in"), "holds 2 DICOM studies")
    result = cli(
        "generate", tmp_path / "in", "--template", "birads_mri", "--format", "dicom-sr",
        "--out", tmp_path / "out", "--no-explain",
    )  # fmt: skip
    assert result.code == 0, result.err
    written = sorted((tmp_path / "out").glob("*.sr.dcm"))
    assert len(written) == 2
    studies = {str(pydicom.dcmread(p).StudyInstanceUID) for p in written}
    sources = {
        str(pydicom.dcmread(next((tmp_path / "in" / n / "t2w").iterdir())).StudyInstanceUID)
        for n in ("first", "second")
    }
    assert studies == sources  # each SR in its own study


def test_sr_qualifies_exactly_the_values_the_reader_should_check(drafted, tmp_path):
    """A value below the model's calibrated threshold carries Certainty of Feature = Known
    possible; the others carry nothing, and dciodvfy still accepts the object."""
    _, study, report = drafted
    marked = report.model_copy(deep=True)
    marked.provenance.check_below = 0.8
    finding = marked.findings[0]
    unsure = next(k for k, v in finding.fields.items() if k != "size_mm")
    for key, value in finding.fields.items():
        value.confidence = 0.4 if key == unsure else 0.95
    out = tmp_path / "marked.sr.dcm"
    write_report(out, marked, "dicom-sr", source=source_headers(study))
    assert dciodvfy_errors(out) == []
    qualified = []  # (value's concept, qualifier) for every qualified item in the document

    def walk(items):
        for item in items:
            for child in item.get("ContentSequence", []):
                if child.ConceptNameCodeSequence[0].CodeValue == "111011":
                    qualified.append(
                        (
                            item.ConceptNameCodeSequence[0].CodeValue,
                            child.ConceptCodeSequence[0].CodeValue,
                        )
                    )
            walk(item.get("ContentSequence", []))

    walk(pydicom.dcmread(out).ContentSequence)
    spec = load_template(report.template.id).field(unsure)
    assert qualified == [(_code(spec.concept)[0], "410590009")]
