"""DICOM ingest: agreement with peers' reference volumes, naming, de-identification, refusals."""

from __future__ import annotations

import gzip
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import DATA, assert_refused, tree_snapshot
from helpers.dicom_factory import IDENTIFIERS, marker_volume, write_marker_dynamic, write_series

from reportgen.io import load_study

VENDORS = DATA / "dicom2nifti"
AGREEING_SERIES = [
    "ge/anatomical/001",
    "ge/dti/001",
    "generic/anatomical/002_non_isotropic",
    "generic/compressed_j2k/001",
    "generic/compressed_jpegls/001",
    "hitachi/anatomical/001",
    "philips/anatomical/001",
    "philips_enhanced/anatomical/001",
    "philips_enhanced/dti/001",
    "siemens/anatomical/001",
    "siemens/dti_classic/001",
    "siemens_multiframe/anatomical/001",
]


def _canonical(path):
    image = nib.as_closest_canonical(nib.load(str(path)))
    data = image.get_fdata()
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, image.affine


def _only_volume(out_dir):
    volumes = sorted(out_dir.glob("*.nii.gz"))
    assert len(volumes) == 1, volumes
    return volumes[0]


@pytest.mark.parametrize("series", AGREEING_SERIES)
def test_ingest_agrees_with_dicom2nifti_ground_truth(tmp_path, cli, series):
    """Shape, orientation, spacing and every voxel value, compared in RAS canonical form."""
    out = tmp_path / "study"
    result = cli("ingest", VENDORS / series, out, "--all-series")  # classified or not
    assert result.code == 0, result.err
    ours, our_affine = _canonical(_only_volume(out))
    truth, truth_affine = _canonical(VENDORS / f"{series}_ground_truth.nii.gz")
    assert ours.shape == truth.shape
    np.testing.assert_allclose(our_affine, truth_affine, atol=1e-3)
    np.testing.assert_array_equal(ours, truth)
    bval_truth = VENDORS / f"{series}_ground_truth.bval"
    if bval_truth.exists():
        ours_bval = next(out.glob("*.bval"))
        assert [float(v) for v in ours_bval.read_text().split()] == [
            float(v) for v in bval_truth.read_text().split()
        ]


@pytest.mark.parametrize(
    ("series", "fragment"),
    [("failing/slicecount/001", "TOO_FEW_SLICES"), ("failing/gantrytilting/001", "GANTRY_TILT")],
)
def test_ingest_refuses_where_dicom2nifti_fails(tmp_path, cli, series, fragment):
    before = tree_snapshot(tmp_path)
    assert_refused(
        cli("ingest", VENDORS / series, tmp_path / "out", "--all-series"),
        "no DICOM series could be converted",
        fragment,
    )
    assert tree_snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_enhanced_siemens_one_file_per_timepoint_matches_dcm2niix(tmp_path, cli):
    """dicom2nifti keeps only the first of these files; every time point must survive."""
    out = tmp_path / "xa10"
    assert (
        cli("ingest", DATA / "dcm_qa_enh" / "In" / "Siemens" / "XA10", out, "--all-series").code
        == 0
    )
    reference, ref_affine = _canonical(
        DATA / "dcm_qa_enh" / "Ref" / "Siemens_REST1_w_SMS_PF7-8_6.nii"
    )
    volumes = sorted(out.glob("*.nii.gz"))
    assert len(volumes) == reference.shape[3] == 4
    for t, path in enumerate(volumes):
        ours, affine = _canonical(path)
        np.testing.assert_array_equal(ours, reference[..., t])
        np.testing.assert_allclose(affine, ref_affine, atol=1e-3)


def test_enhanced_philips_field_map_matches_dcm2niix_and_zero_volume_is_reported(tmp_path, cli):
    out = tmp_path / "philips"
    result = cli("ingest", DATA / "dcm_qa_enh" / "In" / "Philips", out, "--all-series")
    assert result.code == 0
    fieldmap, _ = _canonical(
        DATA / "dcm_qa_enh" / "Ref" / "Philips_WIP_B0_NS_801_e2_fieldmaphz.nii"
    )
    ours, _ = _canonical(_only_volume(out))
    np.testing.assert_allclose(ours, fieldmap, atol=0.01)
    # dicom2nifti returns the magnitude echo as zeros; it is left out and said so, not written.
    study = json.loads((out / "study.json").read_text())
    assert any("all zeros" in s["reason"] for s in study["skipped_series"])
    assert "all zeros" in result.err


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("MR_small.dcm", "TOO_FEW_SLICES"),
        ("MR_small_bigendian.dcm", "TOO_FEW_SLICES"),
        ("MR_truncated.dcm", "cannot be converted"),
        ("emri_small.dcm", "no patient geometry"),
    ],
)
def test_pydicom_single_files_are_refused(tmp_path, cli, name, fragment):
    folder = tmp_path / "dcm"
    folder.mkdir()
    shutil.copy(DATA / "pydicom" / name, folder / name)
    before = tree_snapshot(tmp_path)
    assert_refused(cli("ingest", folder, tmp_path / "out"), fragment)
    assert_refused(cli("inspect", folder), fragment)
    assert tree_snapshot(tmp_path) == before


def test_siemens_private_b_value_is_read(tmp_path):
    import io

    import pydicom

    from reportgen.io.dicom_headers import SeriesGroup, b_value, classify_series

    ds = pydicom.dcmread(
        io.BytesIO(gzip.decompress((DATA / "nibabel" / "siemens_dwi_1000.dcm.gz").read_bytes()))
    )
    assert b_value(ds) == 1000.0
    assert classify_series(SeriesGroup(uid="x", headers=[ds]))[0] == "DWI"


def test_folder_with_no_dicom_is_refused(tmp_path, cli):
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    assert_refused(cli("ingest", folder, tmp_path / "out"), "no DICOM image files")


def test_existing_output_is_never_overwritten(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert_refused(cli("ingest", VENDORS / "hitachi/anatomical/001", out), "output exists")
    assert (out / "keep.txt").read_text() == "precious"


# A synthetic multiparametric study: naming from headers, geometry, de-identification ------


@pytest.fixture
def mp_dicom(tmp_path):
    """T2W, a b0+b800 DWI series, ADC, and a 4-phase DCE series with temporal positions."""
    root = tmp_path / "dicom"
    shape = (24, 20, 8)
    marker = (5, 7, 3)
    write_series(
        root / "t2", marker_volume(shape, marker), description="t2_tse_tra", series_number=2
    )
    dwi_uid = "1.2.826.0.1.3680043.8.498.77"
    for i, b in enumerate((0, 800)):
        write_series(
            root / "dwi",
            marker_volume(shape, marker, peak=1500 - b),
            description="ep2d_diff_tra",
            series_number=3,
            series_uid=dwi_uid,
            instance_offset=i * shape[2],
            extra={"DiffusionBValue": b, "AcquisitionTime": f"10{i}000"},
        )
    write_series(
        root / "adc",
        marker_volume(shape, marker, base=1400, peak=700),
        description="ep2d_diff_tra_ADC",
        series_number=4,
        extra={"ImageType": ["DERIVED", "PRIMARY", "ADC"]},
    )
    dce_uid = "1.2.826.0.1.3680043.8.498.78"
    for t in range(4):
        write_series(
            root / "dce",
            marker_volume(shape, marker, base=200 + 100 * t, peak=500 + 300 * t),
            description="t1_vibe_dyn",
            series_number=5,
            series_uid=dce_uid,
            instance_offset=t * shape[2],
            extra={
                "TemporalPositionIdentifier": t + 1,
                "AcquisitionTime": f"11{t}000",
                "ContrastBolusAgent": "" if t == 0 else "Gd",
            },
        )
    return root, shape, marker


def test_multiparametric_dicom_is_named_and_loaded(tmp_path, cli, mp_dicom):
    root, _shape, _marker = mp_dicom
    out = tmp_path / "anon-study"
    result = cli("ingest", root, out)
    assert result.code == 0, result.err
    study = load_study(out)
    assert list(study.sequences) == ["T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3"]
    assert study.missing == []
    # DCE phases in temporal order: the marker's value rises 500, 800, 1100, 1400.
    peaks = [study.sequences[f"DCE_{t}"].data.max() for t in range(4)]
    assert peaks == sorted(peaks) and peaks[0] == 500
    # The b=800 volume, not b=0, is the DWI.
    assert study.sequences["DWI"].data.max() == 700
    assert json.loads((out / "DWI.json").read_text())["bvals"] == [800.0]


def test_dicom_geometry_lands_in_the_right_world_position(tmp_path, cli, mp_dicom):
    root, _shape, marker = mp_dicom
    study = load_study(root)  # directly from DICOM, nothing written
    vol = study.sequences["T2W"]
    voxel = np.argwhere(vol.data == vol.data.max())[0]
    world_ras = (vol.affine @ np.append(voxel, 1.0))[:3]
    spacing, origin = (2.0, 2.0, 3.0), (-60.0, -60.0, -40.0)
    lps = [origin[a] + marker[a] * spacing[a] for a in range(3)]
    np.testing.assert_allclose(world_ras, [-lps[0], -lps[1], lps[2]], atol=1e-4)


def test_ingest_writes_no_identifiers(tmp_path, cli, mp_dicom):
    root, _, _ = mp_dicom
    out = tmp_path / "anon"
    assert cli("ingest", root, out).code == 0
    blobs = []
    for path in out.rglob("*"):
        raw = path.read_bytes()
        blobs.append(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
    everything = b"\n".join(blobs)
    dates = [IDENTIFIERS[k] for k in ("StudyDate", "PatientBirthDate")]
    iso = [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in dates]  # as a draft would state a date
    for value in [*IDENTIFIERS.values(), *iso, "1.2.826.0.1.3680043.8.498"]:
        for variant in {value, value.replace("^", " "), value.split("^")[0]}:
            assert variant.encode() not in everything, variant


def test_series_override_names_an_unclassified_series(tmp_path, cli):
    out = tmp_path / "study"
    refused = cli("ingest", VENDORS / "hitachi/anatomical/001", out, "--series", "9999=T2W")
    assert_refused(refused, "not a protocol sequence")  # and nothing written
    assert not out.exists()
    everything = tmp_path / "all"
    assert cli("ingest", VENDORS / "hitachi/anatomical/001", everything, "--all-series").code == 0
    assert next(p.name for p in everything.glob("*.nii.gz")).startswith("other_series")
    number = json.loads(next(everything.glob("other_series*.json")).read_text())["series_number"]
    assert f"series {number}: not a protocol sequence" in refused.err
    out2 = tmp_path / "study2"
    assert (
        cli("ingest", VENDORS / "hitachi/anatomical/001", out2, "--series", f"{number}=T2W").code
        == 0
    )
    assert (out2 / "T2W.nii.gz").exists()
    assert (
        json.loads((out2 / "T2W.json").read_text())["classified_by"] == "named on the command line"
    )


def test_the_study_id_is_a_hash_never_the_folder_name_or_patient_id(tmp_path, cli, mp_dicom):
    root, _, _ = mp_dicom
    named = tmp_path / IDENTIFIERS["PatientID"]  # archive exports name folders so
    root.rename(named)
    study = load_study(named)
    assert study.study_id.startswith("study-") and len(study.study_id) == 22
    assert IDENTIFIERS["PatientID"] not in study.study_id
    assert load_study(named).study_id == study.study_id  # stable
    out = tmp_path / "Doe_John"
    assert cli("ingest", named, out).code == 0
    assert json.loads((out / "study.json").read_text())["study_id"] == study.study_id
    assert load_study(out).study_id == study.study_id
    assert cli("ingest", named, tmp_path / "b", "--study-id", "case-7").code == 0
    assert load_study(tmp_path / "b").study_id == "case-7"


def test_dicom_files_without_a_preamble_are_read(tmp_path, mp_dicom):
    root, _, _ = mp_dicom
    for path in (root / "t2").iterdir():
        raw = path.read_bytes()
        assert raw[128:132] == b"DICM"
        path.write_bytes(raw[132:])  # as Bruker ParaVision writes them: no preamble, no DICM
    (root / "t2" / "notes.txt").write_text("not DICOM at all\n")
    study = load_study(root)
    assert "T2W" in study.sequences and study.sequences["T2W"].data.max() > 0


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (KeyError("(0029,1020)"), "a header element the conversion needs is missing ((0029,1020))"),
        (
            AttributeError("'FileDataset' object has no attribute 'PixelRepresentation'"),
            "no PixelRepresentation in the headers: not a plain image series",
        ),
    ],
)
def test_skip_reasons_are_words_not_raw_exception_text(error, words):
    from reportgen.io.dicom import _why

    assert _why(error).startswith(words)


def test_a_74_phase_dynamic_beside_a_variable_flip_angle_set_round_trips(tmp_path, cli):
    """Once: four pre-contrast flip-angle series became DCE_0..3 and ingest wrote DCE_0 ...
    DCE_73, which inspect then refused. Phases are 10 s apart; the model's are the first
    and those nearest 90, 240 and 390 s after it."""
    root = tmp_path / "dicom"
    shape, marker = (16, 12, 4), (4, 5, 2)
    for k, flip in enumerate((2, 5, 10, 20)):  # T1 mapping before the dynamic
        write_series(
            root / f"vfa{flip}",
            marker_volume(shape, marker, base=100 + 20 * k),
            description=f"fl3d_vibe_pre_flip_{flip}deg",
            series_number=10 + k,
            extra={"FlipAngle": flip, "RepetitionTime": 5, "EchoTime": 2},
        )
    write_marker_dynamic(
        root / "dyn", 74, shape, marker, "1.2.826.0.1.3680043.8.498.99",
        extra={"RepetitionTime": 5, "EchoTime": 2},
    )  # fmt: skip
    out = tmp_path / "study"
    result = cli("ingest", root, out)
    assert result.code == 0, result.err
    study = load_study(out)
    dce = [n for n in study.sequences if n.startswith("DCE")]
    assert dce == ["DCE_0", "DCE_1", "DCE_2", "DCE_3"]
    peaks = [int(study.sequences[n].data.max()) for n in dce]
    assert peaks == [300, 300 + 90, 300 + 240, 300 + 390]  # phases 0, 9, 24, 39
    summary = json.loads((out / "study.json").read_text())
    assert "74 phases" in summary["dce_phases"] and "phase 9 (90 s)" in summary["dce_phases"]
    assert any("variable-flip-angle" in w for w in summary["warnings"])
    assert study.metadata["dce_phases"] == summary["dce_phases"]
    assert cli("inspect", out).code == 0


def test_dynamic_phases_are_timed_from_the_injection_when_the_headers_give_it(tmp_path):
    """Six phases before the bolus (at 52 s): the pre-contrast phase is the last of them
    (50 s), and the model's phases are those nearest 90, 240 and 390 s after injection."""
    from reportgen.io.ingest import ingest_dicom

    root = tmp_path / "dicom"
    shape, marker = (16, 12, 4), (4, 5, 2)
    write_marker_dynamic(
        root / "dyn", 50, shape, marker, "1.2.826.0.1.3680043.8.498.98",
        extra={"ContrastBolusStartTime": "120052.000", "ContrastBolusAgent": "gadobutrol"},
    )  # fmt: skip
    out = tmp_path / "study"
    summary = ingest_dicom(root, out)
    study = load_study(out)
    peaks = [int(study.sequences[f"DCE_{k}"].data.max()) for k in range(4)]
    assert peaks == [350, 440, 590, 740]  # phases 5, 14, 29, 44
    assert "after the injection (ContrastBolusStartTime)" in summary["dce_phases"]
    assert "phase 5 (-2 s)" in summary["dce_phases"]
    assert "120052" not in (out / "DCE_0.json").read_text()  # times of day stay behind
    # the draft's technique says when the read phases were acquired, after the injection
    from reportgen.io.dicom import read_dicom_study
    from reportgen.report.technique import study_technique

    for read in (study, read_dicom_study(root)):
        [dce] = [t for t in study_technique(read) if t.sequence == "DCE"]
        assert dce.phase_times_s == [-2.0, 88.0, 238.0, 388.0] and dce.timed_from == "injection"
    assert "120052" not in (out / "study.json").read_text()
