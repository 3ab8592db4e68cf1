"""Real studies, second pass: no path around the safety checks, every output carrying its
warnings. Each test reproduces what a new user hit on real studies and folders made from
them (the folders are built here from phantoms and the ProstateX study in tests/data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from conftest import DATA, assert_refused

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.io.study import pseudonymous_name_id
from reportgen.model.drafting import draft_checked
from reportgen.model.generate import GenerateOptions
from reportgen.model.generators import GeneratorChoice
from reportgen.render import render_text
from reportgen.render.output import write_report
from reportgen.report import build_report, load_template
from reportgen.report.assessable import acquired_families, not_assessable
from reportgen.report.schema import Provenance, StudyRef
from reportgen.synth import SynthOptions, synth_dataset

PROSTATEX = DATA / "prostatex" / "ProstateX-0000"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom")
    synth_dataset(
        root, 1, SynthOptions(protocol="low_resolution", domain="breast", seed=5), workers=1
    )
    return root / read_manifest(root)[0]["dir"]


def copy_of(phantom: Path, folder: Path, names: list[str], study_json: bool = False) -> Path:
    """A study folder holding only some of the phantom's series, as users make them."""
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(phantom / f"{name}.nii.gz", folder / f"{name}.nii.gz")
    if study_json:
        shutil.copy(phantom / "study.json", folder / "study.json")
    return folder


# -- 1. no T2W, no tag: the region cannot be placed --------------------------------------
def test_a_study_without_t2w_or_a_tag_is_refused_or_drafted_with_the_warning(
    phantom, tmp_path, cli
):
    dce_only = copy_of(phantom, tmp_path / "dce", ["DCE_0", "DCE_1", "DCE_2", "DCE_3"])
    assert_refused(cli("generate", dce_only, "--no-explain"), "no T2W", "--force")
    forced = cli("generate", dce_only, "--force", "--no-explain")
    assert forced.code == 0 and "cannot be checked" in forced.err
    report = json.loads(forced.out)
    assert any(
        p["rule"] == "fitness" and "not meaningful" in p["message"]
        for p in report["validation"]["problems"]
    )


# -- 10 and the lone post-contrast volume: nothing said that the study cannot show -------
def test_no_enhancement_is_stated_without_a_pre_and_a_post_contrast_phase():
    template = load_template("birads_mri")
    assert "dce" not in acquired_families(["T2W", "DCE_1"])  # a lone post-contrast volume
    assert "dce" in acquired_families(["T2W", "DCE_0", "DCE_2"])
    assert {"bpe_level", "bpe_symmetry"} <= not_assessable(template, ["T2W", "DCE_1"])

    def no_findings(sequences: list[str]) -> str:
        report = build_report(
            template,
            {"fgt": "fgt_scattered", "assessment_category": "birads_1"},
            [],
            study=StudyRef(study_id="s", sequences_used=sequences),
            provenance=Provenance(source="human"),
        )
        return render_text(report, "en") + render_text(report, "zh")

    t2_only = no_findings(["T2W"])
    assert "enhancement cannot be assessed" in t2_only and "强化无法评估" in t2_only
    assert "No suspicious enhancement" not in t2_only and "未见可疑强化灶" not in t2_only
    assert "No suspicious enhancement or mass." in no_findings(["T2W", "DCE_0", "DCE_1"])


# -- 2. every output format carries the notice and each warning --------------------------
@pytest.fixture(scope="module")
def forced_prostate(tmp_path_factory):
    """ProstateX-0000 (tagged PROSTATE) drafted as a breast study under --force, written
    in every format."""
    out = tmp_path_factory.mktemp("formats")
    study = load_study(PROSTATEX)
    checked = draft_checked(
        study, GeneratorChoice(None, "birads_mri"), GenerateOptions(explain=False), force=True
    )
    from reportgen.io.dicom import source_headers

    draft, template = checked.draft, checked.generator.template
    formats = {"json": "r.json", "text": "r.txt", "html": "r.html", "fhir": "r.fhir.json"}
    formats["dicom-sr"] = "r.sr.dcm"
    formats["dicom-seg"] = "r.seg.dcm"
    if shutil.which(os.environ.get("REPORTGEN_CHROMIUM") or "chromium"):
        formats["pdf"] = "r.pdf"
    for fmt, name in formats.items():
        write_report(
            out / name,
            draft.report,
            fmt,
            "en",
            template,
            source_headers(study) if fmt.startswith("dicom") else None,
            draft.outlines,
            draft.grid_affine,
            study=study,
        )
    return out, draft.report, formats


def pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        if os.environ.get("REPORTGEN_REQUIRE_SERVICES") == "1":
            pytest.fail("pdftotext (Debian package poppler-utils) is not installed")
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_every_format_carries_the_notice_and_the_forced_warning(forced_prostate):
    out, report, formats = forced_prostate
    warning = next(p.message for p in report.validation.problems if p.rule == "fitness")
    assert "PROSTATE" in warning and "not meaningful" in warning
    texts = {
        "json": (out / "r.json").read_text(),
        "text": (out / "r.txt").read_text(),
        "html": (out / "r.html").read_text(),
    }
    bundle = json.loads((out / "r.fhir.json").read_text())
    diagnostic = bundle["entry"][0]["resource"]
    assert diagnostic["resourceType"] == "DiagnosticReport"
    assert diagnostic["status"] == "preliminary"
    notes = [e["valueString"] for e in diagnostic["extension"] if "report-note" in e["url"]]
    texts["fhir"] = " ".join(notes)
    assert "not meaningful" in diagnostic["conclusion"]  # seen by systems showing only that
    sr = pydicom.dcmread(out / "r.sr.dcm")
    texts["dicom-sr"] = " ".join(i.TextValue for i in sr.ContentSequence if i.ValueType == "TEXT")
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    if "pdf" in formats:
        texts["pdf"] = " ".join(pdf_text(out / "r.pdf").split())
    for fmt, text in texts.items():
        flat = " ".join(text.replace("&#x27;", "'").split())
        assert "not for clinical use" in flat, fmt
        assert "BodyPartExamined is PROSTATE" in flat and "not meaningful" in flat, fmt


def test_the_draft_states_the_technique_its_headers_give(forced_prostate):
    """The real Siemens study: field strength and b-value from its DICOM headers, the
    pixel and slice from its geometry, and no comparison (the product reads one study)."""
    out, report, _ = forced_prostate
    text = (out / "r.txt").read_text()
    technique = next(line for line in text.splitlines() if line.startswith("Technique:"))
    assert technique.startswith("Technique: 3 T MRI. T2W, 0.5 x 0.5 mm in-plane, 3.0 mm slices")
    assert "DWI, 2.0 x 2.0 mm in-plane, 3.0 mm slices, b = 800 s/mm²" in technique
    assert "Comparison: none available." in text
    assert {t.sequence for t in report.study.technique} == {"T2W", "DWI", "ADC"}
    # dated as its StudyDate says, in every format that carries a date
    assert report.study.study_date == "2011-07-07" and "Study date: 2011-07-07" in text
    fhir = json.loads((out / "r.fhir.json").read_text())
    assert fhir["entry"][0]["resource"]["effectiveDateTime"] == "2011-07-07"
    assert pydicom.dcmread(out / "r.sr.dcm").StudyDate == "20110707"


def test_a_chinese_draft_says_its_notice_and_warnings_in_chinese(forced_prostate):
    """`--lang zh` text kept the notice and every note in English."""
    from reportgen.render.html import render_html

    _, report, _ = forced_prostate
    text = render_text(report, "zh")
    notice = text.splitlines()[1]
    assert "不可用于临床" in notice and "clinical" not in notice
    [fitness] = [line for line in text.splitlines() if "--force" in line]
    assert fitness.startswith("注意：警告：") and "本报告无意义" in fitness
    assert "PROSTATE" in fitness  # the measured detail is kept as written
    html = render_html(report, "zh")
    assert "不可用于临床" in html and "本报告无意义" in html
    english = render_text(report, "en")
    assert "not for clinical use" in english and "本报告" not in english


# -- 3. batch mode: every entry of the folder, and --force honoured -----------------------
def test_batch_lists_every_entry_and_honours_force(phantom, tmp_path, cli):
    batch = tmp_path / "batch"
    copy_of(phantom, batch / "breast", ["T2W", "DWI", "ADC", "DCE_0", "DCE_1"], study_json=True)
    shutil.copytree(PROSTATEX, batch / "prostate")
    (batch / "empty").mkdir()
    (batch / "notes.txt").write_text("not a study")
    out = tmp_path / "out"
    result = cli("generate", batch, "--out", out, "--no-explain")
    summary = json.loads((out / "summary.json").read_text())
    by_source = {s["source"]: s for s in summary["studies"]}
    assert set(by_source) == {"breast", "prostate", "empty", "notes.txt"}
    assert by_source["breast"]["status"] == "drafted"
    assert by_source["prostate"]["status"] == "refused"
    assert "PROSTATE" in by_source["prostate"]["detail"]
    assert by_source["empty"]["status"] == "refused" and "empty" in by_source["empty"]["detail"]
    assert by_source["notes.txt"]["status"] == "refused"
    assert result.code == 1
    forced_out = tmp_path / "forced"
    cli("generate", batch, "--out", forced_out, "--no-explain", "--force")
    forced = {
        s["source"]: s for s in json.loads((forced_out / "summary.json").read_text())["studies"]
    }
    assert forced["prostate"]["status"] == "drafted" and "warning" in forced["prostate"]["detail"]


# -- 9. a folder's name never becomes the study id ----------------------------------------
def test_a_nifti_studys_id_is_a_hash_of_its_name_never_the_name(phantom, tmp_path, cli):
    name = "Müller Anna 1962 乳腺"
    folder = copy_of(phantom, tmp_path / name, ["T2W", "DWI", "ADC", "DCE_0", "DCE_1"])
    study = load_study(folder)
    assert study.study_id == pseudonymous_name_id(name) and "Müller" not in study.study_id
    single = tmp_path / "Doe_John.nii.gz"
    shutil.copy(phantom / "T2W.nii.gz", single)
    assert "Doe" not in load_study(single, sequence="T2W").study_id
    out = tmp_path / "drafts"
    result = cli("generate", folder, "--out", out / "draft.json", "--no-explain")
    assert result.code == 0, result.err
    written = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "Müller" not in written and "Müller" not in result.err + result.out


# -- 11. an output that cannot be written is refused before the work ---------------------
@pytest.fixture
def read_only(tmp_path):
    """A folder no one can write in, even root (immutable, else a read-only bind mount)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
        return
    mounted = subprocess.run(
        f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}",
        shell=True,
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (no chattr, no mount)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_output_folder_is_one_line_and_exit_2_before_drafting(phantom, read_only, cli):
    for args in (
        ("generate", phantom, "--out", read_only / "draft.json", "--no-explain"),
        ("generate", phantom.parent, "--out", read_only / "drafts", "--no-explain"),
        ("ingest", PROSTATEX, read_only / "study"),
    ):
        assert_refused(cli(*args), "cannot write")


# -- 6. a finding is coded as what it is ---------------------------------------------------
def test_sr_and_seg_code_each_finding_as_its_own_type(forced_prostate):
    from ontology.concepts import default_concepts
    from reportgen.report.schema import Value

    out, report, _ = forced_prostate
    template, concepts = load_template("birads_mri"), default_concepts()
    nme = {"type": Value(value="non_mass_enhancement")}
    assert template.finding_type(nme) == "non_mass_enhancement"
    assert template.finding_type({}) == "mass"  # a template's findings without a type
    expected = [concepts[template.finding_type(f.fields)].en for f in report.findings]
    sr = pydicom.dcmread(out / "r.sr.dcm")
    coded = [
        item.ConceptCodeSequence[0].CodeMeaning
        for group in sr.ContentSequence
        if group.ValueType == "CONTAINER"
        for measurements in group.ContentSequence
        for item in measurements.get("ContentSequence", [])
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Finding"
    ]
    assert coded == expected
    seg = pydicom.dcmread(out / "r.seg.dcm", stop_before_pixels=True)
    types = [s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for s in seg.SegmentSequence]
    assert set(types) <= set(expected) and types


# -- 8. a multi-b series without b-values is not quietly read at its lowest b ------------
def test_an_untagged_multi_b_series_named_dwi_is_refused_not_read_at_some_b(tmp_path, cli):
    import numpy as np
    from helpers.dicom_factory import write_series
    from pydicom.uid import generate_uid

    uid = generate_uid()
    for volume in range(5):  # five b-values, none of them in the headers
        write_series(
            tmp_path / "dicom",
            np.full((8, 8, 4), 400 - 60 * volume, np.int16),
            series_number=3,
            description="ep2d_diff_5b",
            series_uid=uid,
            instance_offset=volume * 4,
            extra={"AcquisitionTime": f"1200{volume:02d}", "AcquisitionNumber": volume + 1},
        )
    result = cli("ingest", tmp_path / "dicom", tmp_path / "out", "--series", "3=DWI")
    assert_refused(result, "series 3, named DWI", "no b-values")
    assert not (tmp_path / "out").exists()


# -- 7. NIfTI and DICOM in one folder: refused, never the DICOM silently dropped ---------
def test_a_folder_mixing_nifti_and_dicom_is_refused_in_one_line(phantom, tmp_path, cli):
    mixed = copy_of(phantom, tmp_path / "mixed", ["T2W", "DWI", "ADC", "DCE_0", "DCE_1"])
    shutil.copytree(PROSTATEX / "4.000000-t2tsetra-00702", mixed / "t2_dicom")
    assert_refused(cli("generate", mixed, "--no-explain"), "both images", "DICOM")
    (mixed / "notes.txt").write_text("a note")  # a sidecar-like file is no reason to refuse
    shutil.rmtree(mixed / "t2_dicom")
    assert load_study(mixed).sequences.keys() >= {"T2W", "DWI"}


# -- 12. warnings that say where they come from, once ------------------------------------
def test_the_classification_names_the_tag_it_read_and_a_long_dynamic_is_one_line(tmp_path, cli):
    import numpy as np
    from helpers.dicom_factory import marker_volume, write_marker_dynamic, write_series

    from reportgen.io.dicom import scan_dicom_folder
    from reportgen.io.dicom_headers import classify_series

    shape, marker = (8, 8, 4), (3, 3, 2)
    write_series(
        tmp_path / "t2",
        np.full(shape, 300, np.int16),
        description="series 3",
        series_number=3,
        extra={"ProtocolName": "t2_tse_tra", "RepetitionTime": 800, "EchoTime": 20},
    )
    write_series(tmp_path / "pre", marker_volume(shape, marker), series_number=4)
    write_marker_dynamic(tmp_path / "dyn", 30, shape, marker, "1.2.826.0.1.3680043.8.498.77")
    t2 = next(g for g in scan_dicom_folder(tmp_path) if g.number == 3)
    assert classify_series(t2) == ("T2W", "protocol name names a T2-weighted series")
    study = load_study(tmp_path)
    unread = [w for w in study.warnings if "not one of the model's phases" in w]
    assert len(unread) == 1 and "26 volumes not read" in unread[0], study.warnings
    # ingest writes what a draft reads (it wrote all 70 phases of the real dynamic) and
    # says what it left out once per series, each warning once
    ingested = cli("ingest", tmp_path, tmp_path.parent / "ingested")
    assert ingested.code == 0, ingested.err
    written = sorted(p.name for p in (tmp_path.parent / "ingested").glob("*.nii.gz"))
    assert written == [f"DCE_{i}.nii.gz" for i in range(4)] + ["T2W.nii.gz"]
    lines = ingested.err.splitlines()
    assert sum("not one of the model's phases" in line for line in lines) == 1, lines
    assert len(lines) == len(set(lines)), lines
    assert any("26 volumes" in line and "--all-series writes it" in line for line in lines)


# -- 5 (pelvic readers). size, box and outline come from one part of the outline ----------
def test_a_pelvic_primarys_box_and_outline_are_the_part_its_size_was_measured_on():
    import numpy as np

    from reportgen.measure import largest_component

    study = load_study(PROSTATEX)
    checked = draft_checked(
        study,
        GeneratorChoice(None, "figo_endometrium_2023"),
        GenerateOptions(explain=False),
        force=True,
    )
    [finding], [outline] = checked.draft.report.findings, checked.draft.outlines
    box = finding.evidence.box
    extent = np.subtract(box.max_mm, box.min_mm)
    size = finding.fields["size_mm"].value
    # was a 160 x 132 x 56 mm box around scattered voxels, stating 56 mm
    assert extent.max() <= 1.25 * size + 8, (size, extent)
    assert np.array_equal(outline, largest_component(outline))  # one part, not scattered


# -- 5 (breast model). a finding's side, clock face, size and box: one outline's measure --
@pytest.mark.parametrize("source", ["ProstateX-0001", "ProstateX-0000", "phantom"])
def test_a_breast_findings_side_size_and_box_are_one_outlines_measurement(
    source, phantom, monkeypatch
):
    """Forced on ProstateX-0001 the breast model drafted two findings with one candidate's
    side, clock face and size (83 mm, from a 12 x 42 x 18 mm outline) and gave the second
    the other candidate's box. Whatever findings a forced draft states, each is one
    outline's measurement."""
    import numpy as np

    import reportgen.model.generate as generate

    seen: list = []
    real = generate.outlined_boxes

    def spy(report, candidates, affine, shape=None, chosen=None):
        seen.extend(c for c in candidates if c.outline is not None)
        return real(report, candidates, affine, shape, chosen)

    monkeypatch.setattr(generate, "outlined_boxes", spy)
    folder = phantom if source == "phantom" else DATA / "prostatex" / source
    checked = draft_checked(
        load_study(folder),
        GeneratorChoice(None, "birads_mri"),
        GenerateOptions(explain=False),
        force=True,
    )
    draft = checked.draft
    # since the breast's lesion search stops at the axilla (stop 53) ProstateX-0001 forced
    # drafts no finding at all; the other two still draft some, each one outline's
    assert draft.report.findings or source == "ProstateX-0001"
    assert len(seen) >= len(draft.report.findings)
    for finding, outline in zip(draft.report.findings, draft.outlines, strict=True):
        [own] = [
            c
            for c in seen
            if np.array_equal(np.argwhere(outline), c.outline[np.lexsort(c.outline.T[::-1])])
        ]
        stated = {k: str(finding.fields[k].value) for k in own.reading.pointers}
        assert stated == own.reading.pointers, (stated, own.reading.pointers)
        box = finding.evidence.box
        diagonal = float(np.linalg.norm(np.subtract(box.max_mm, box.min_mm)))
        assert finding.fields["size_mm"].value <= diagonal + 0.5, (finding.fields["size_mm"], box)


# -- the one drafting service: a DICOM folder scanned once, each grid prepared once -------
def test_generate_scans_a_dicom_folder_once_and_prepares_each_grid_once(cli, tmp_path, monkeypatch):
    import reportgen.data.adapter as adapter
    import reportgen.io.dicom as dicom

    scans, grids = [], []
    scan, prepare = dicom._scan, adapter.prepare_study

    def counted_scan(folder, files):
        scans.append(folder)
        return scan(folder, files)

    def counted_prepare(study, spec, *args, **kwargs):
        grids.append(spec)
        return prepare(study, spec, *args, **kwargs)

    monkeypatch.setattr(dicom, "_scan", counted_scan)
    monkeypatch.setattr(adapter, "prepare_study", counted_prepare)
    dicom._SCANNED.clear()
    copy = tmp_path / "study"
    shutil.copytree(PROSTATEX, copy)  # a folder no earlier test scanned
    result = cli(
        "generate",
        copy,
        "--force",
        "--no-explain",
        "--format",
        "dicom-sr",
        "--out",
        tmp_path / "r.dcm",
    )
    assert result.code == 0, result.err
    assert len(scans) == 1, scans  # headers for the refusal, the conversion and the SR
    assert len(grids) == len(set(grids)) == 2, grids  # the body-region grid and the model's
