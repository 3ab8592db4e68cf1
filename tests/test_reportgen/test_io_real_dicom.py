"""A real Siemens prostate study (PROSTATEx, CC BY): the right series, by physics, and back.

What once went wrong on it: the acquired multi-b DWI was split into one-slice "phases" by
its per-slice acquisition times and refused, DWI then came from the calculated b=1000 of
another series than the ADC, and the study id was the folder's name.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
from conftest import DATA
from helpers.dicom_factory import marker_volume, write_series

from reportgen.io import load_study

PROSTATEX = DATA / "prostatex" / "ProstateX-0000"


def test_real_study_t2w_is_the_axial_tse_and_dwi_the_acquired_b800_of_the_adcs_acquisition():
    study = load_study(PROSTATEX)
    series = study.metadata["series"]
    assert series["T2W"]["series_number"] == 4  # t2_tse_tra, not the coronal (5)
    assert series["DWI"]["series_number"] == 6 and series["DWI"]["b_value"] == 800.0
    assert series["ADC"]["series_number"] == 7
    dwi, adc = study.sequences["DWI"], study.sequences["ADC"]
    assert dwi.shape == adc.shape and np.allclose(dwi.affine, adc.affine, atol=1e-3)
    assert any("b=1000" in w and "not read" in w for w in study.warnings)
    assert not any("cannot be converted" in w for w in study.warnings)
    assert study.study_id.startswith("study-") and "ProstateX" not in study.study_id
    assert study.metadata["study_date"] == "2011-07-07"  # its StudyDate, as ISO 8601


def test_real_study_ingests_and_reads_back(tmp_path, cli):
    out = tmp_path / "ProstateX-0000"  # a folder named after the pseudonym: not the id
    assert cli("ingest", PROSTATEX, out).code == 0
    again = load_study(out)
    assert set(again.sequences) == {"T2W", "DWI", "ADC"}
    assert json.loads((out / "DWI.json").read_text())["bvals"] == [800.0]
    assert "ProstateX" not in json.loads((out / "study.json").read_text())["study_id"]
    assert cli("inspect", out).code == 0
    # the region survives ingest, so the ingested folder is refused as the DICOM was
    assert again.metadata["body_part"] == "PROSTATE"
    assert "study_date" not in again.metadata  # ingest writes a de-identified folder
    refused = cli("generate", out, "--template", "birads_mri", "--no-explain")
    assert refused.code == 2 and "BodyPartExamined is PROSTATE" in refused.err


def _sagittal(folder, series_number, shape):
    """A T2 series in the sagittal plane: slices step along x (left-right)."""
    per_slice = [{"ImagePositionPatient": [-40.0 + 3.0 * k, -80.0, 60.0]} for k in range(shape[2])]
    write_series(
        folder,
        marker_volume(shape, (shape[0] // 2, shape[1] // 2, shape[2] // 2)),
        description="t2_tse_sag",
        series_number=series_number,
        extra={"ImageOrientationPatient": [0, 1, 0, 0, 0, -1]},
        per_slice_extra=per_slice,
    )


def test_t2w_is_in_the_plane_the_diffusion_uses_and_a_named_series_wins(tmp_path, cli):
    root = tmp_path / "dicom"
    _sagittal(root / "sag", 3, (40, 40, 20))  # more voxels than the axial
    write_series(root / "tra", marker_volume((24, 20, 8), (5, 7, 3)), series_number=4)
    write_series(
        root / "adc",
        marker_volume((24, 20, 8), (5, 7, 3), base=1400, peak=700),
        description="ep2d_diff_tra_ADC",
        series_number=7,
        extra={"ImageType": ["DERIVED", "PRIMARY", "ADC"]},
    )
    assert load_study(root).metadata["series"]["T2W"]["series_number"] == 4
    out = tmp_path / "named"
    assert cli("ingest", root, out, "--series", "3=T2W").code == 0
    assert json.loads((out / "T2W.json").read_text())["series_number"] == 3
    shutil.rmtree(out)


def test_the_breast_model_refuses_a_prostate_and_drafts_it_only_under_force(tmp_path, cli):
    from conftest import assert_refused

    from reportgen.report import Report

    assert_refused(
        cli("generate", PROSTATEX, "--no-explain"), "BodyPartExamined is PROSTATE", "--force"
    )
    out = tmp_path / "forced.json"
    result = cli("generate", PROSTATEX, "--no-explain", "--force", "--out", out)
    assert result.code == 0 and "warning: the study's BodyPartExamined is PROSTATE" in result.err
    report = Report.from_json(out.read_text())
    first = report.validation.problems[0]
    assert (first.rule, first.severity) == ("fitness", "warning")
    assert "not meaningful" in first.message
    dce_fields = {"bpe_level", "bpe_symmetry"}
    assert not dce_fields & {k for k, v in report.fields.items() if v.value is not None}
    for finding in report.findings:
        stated = {k for k, v in finding.fields.items() if v.value is not None}
        assert not stated & {"kinetics_initial", "kinetics_delayed", "internal_enhancement"}
    assert "ProstateX" not in out.read_text()
