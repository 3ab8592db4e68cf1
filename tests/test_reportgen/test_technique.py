"""A draft states its technique: each sequence's pixel and slice from its geometry, field
strength and b-value where the headers or sidecars give them (never guessed), the DCE
phases as one entry, and that no comparison study was available."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from reportgen.io.readers import read_study_folder
from reportgen.io.study import Study, Volume
from reportgen.render.text import render_text
from reportgen.report import build_report, load_template
from reportgen.report.schema import Provenance, StudyRef
from reportgen.report.technique import study_technique


def _volume(spacing) -> Volume:
    return Volume(np.zeros((8, 8, 8), np.float32), np.diag([*spacing, 1.0]))


def _study() -> Study:
    sequences = {"T2W": _volume((0.7, 0.7, 3.0)), "DWI": _volume((2.0, 2.0, 4.0))}
    sequences |= {f"DCE_{k}": _volume((2.0, 0.9, 0.9)) for k in range(4)}  # slices first
    metadata = {
        "dce_timing": {"seconds": [-2.0, 88.0, 238.0, 388.0], "after": "injection"},
        "b_value": {"DWI": 800.0},
        "acquisition": {n: {"MagneticFieldStrength": 1.5} for n in sequences},
    }
    return Study("s", sequences, "memory", "folder", metadata=metadata)


def _report(technique):
    return build_report(
        load_template("birads_mri"),
        {},
        [],
        study=StudyRef(study_id="s", sequences_used=["T2W"], technique=technique),
        provenance=Provenance(source="model"),
    )


def test_the_technique_line_says_how_each_sequence_was_acquired():
    technique = study_technique(_study())
    assert [t.sequence for t in technique] == ["T2W", "DWI", "DCE"]
    dce = technique[-1]
    assert dce.in_plane_mm == (0.9, 0.9) and dce.slice_mm == 2.0 and dce.phases == 4
    text = render_text(_report(technique), "en")
    assert (
        "Technique: 1.5 T MRI. T2W, 0.7 x 0.7 mm in-plane, 3.0 mm slices; DWI, 2.0 x 2.0 mm "
        "in-plane, 4.0 mm slices, b = 800 s/mm²; DCE, 0.9 x 0.9 mm in-plane, 2.0 mm slices, "
        "pre-contrast and 3 post-contrast phases, at 88/238/388 s after the injection." in text
    )
    assert "Comparison: none available." in text
    zh = render_text(_report(technique), "zh")
    assert "检查技术：1.5 T MRI。" in zh and "平扫及增强后3期" in zh and "无既往检查" in zh
    assert "于注射对比剂后88/238/388 s" in zh


def test_what_no_header_gave_is_left_out_and_a_report_not_drafted_has_no_technique():
    study = _study()
    study.metadata = {}
    text = render_text(_report(study_technique(study)), "en")
    assert "Technique: T2W," in text and " T MRI" not in text and "b = " not in text
    assert "Technique" not in render_text(_report([]), "en")


def test_a_nifti_sidecar_gives_the_field_strength(tmp_path):
    image = nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.diag([0.8, 0.8, 3.0, 1.0]))
    nib.save(image, tmp_path / "T2W.nii.gz")
    (tmp_path / "T2W.json").write_text(json.dumps({"MagneticFieldStrength": 3}))
    technique = study_technique(read_study_folder(tmp_path))
    assert technique[0].field_strength_t == 3.0 and technique[0].slice_mm == 3.0


def test_drafts_with_their_technique_parse_back_to_the_same_values():
    """The technique line (sizes in mm, "slices") is never read as a finding's value."""
    from pathlib import Path

    from reportgen.report.parse import parse_report
    from reportgen.report.schema import Report

    golden = sorted((Path(__file__).parents[1] / "data" / "golden").glob("*.report.json"))
    assert golden
    for path in golden:
        report = Report.from_json(path.read_text())
        assert report.study.technique  # drafted from images
        for lang in ("en", "zh"):
            parsed = parse_report(render_text(report, lang), report.template.id, lang)
            assert {k: v.value for k, v in parsed.fields.items()} == {
                k: v.value for k, v in report.fields.items()
            }, (path.name, lang)
            assert [{k: v.value for k, v in f.fields.items()} for f in parsed.findings] == [
                {k: v.value for k, v in f.fields.items()} for f in report.findings
            ], (path.name, lang)


def test_the_contrast_agent_is_named_only_when_recognised_and_its_volume_stated():
    """A DCE technique names the gadolinium agent by its generic name and the volume
    injected, where the headers give them; the agent's free text itself is never kept (it
    is a field de-identification blanks), so text naming no known agent states none."""
    from pydicom.dataset import Dataset

    from reportgen.io.dicom_headers import technical_info

    named = Dataset()
    named.ContrastBolusAgent = "DOTAREM 0.5 mmol/ml"
    named.ContrastBolusVolume = 15
    named.SeriesNumber = 7  # where a key image is on the PACS
    info = technical_info(named)
    assert info["ContrastAgent"] == "gadoterate meglumine" and info["ContrastBolusVolume"] == 15
    assert info["SeriesNumber"] == 7 and isinstance(info["SeriesNumber"], int)
    assert "DOTAREM" not in str(info)
    other = Dataset()
    other.ContrastBolusAgent = "Gd given by Dr Smith"
    assert "ContrastAgent" not in technical_info(other)
    study = _study()
    for k in range(1, 4):
        study.metadata["acquisition"][f"DCE_{k}"] |= {
            "ContrastAgent": "gadobutrol",
            "ContrastBolusVolume": 7.5,
        }
    dce = study_technique(study)[-1]
    assert dce.contrast_agent == "gadobutrol" and dce.contrast_volume_ml == 7.5
    assert "post-contrast phases, gadobutrol 7.5 ml, at 88/238/388 s" in render_text(
        _report(study_technique(study)), "en"
    )


def test_a_draft_states_its_indication_or_that_none_was_provided():
    """The indication the requesting clinician gave is stated after the comparison, one
    line; a draft without one says it was not provided; an empty, overlong or control-
    character indication is refused."""
    import pytest

    from reportgen.report.schema import INDICATION_CHARS, clean_indication

    report = _report(study_technique(_study()))
    assert "Indication: not provided" in render_text(report, "en")
    report.study.indication = clean_indication("  Palpable lump,\n right breast  ")
    assert report.study.indication == "Palpable lump, right breast"
    assert "Indication: Palpable lump, right breast" in render_text(report, "en")
    assert "检查指征：Palpable lump, right breast" in render_text(report, "zh")
    for bad in ("   ", "x" * (INDICATION_CHARS + 1), "lump\x1b[31m"):
        with pytest.raises(ValueError):
            clean_indication(bad)
