"""Study I/O from NIfTI: folders, BIDS-like names, sidecars, 3D/4D files, odd headers, refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import DATA, assert_refused, ball, save_nifti, tree_snapshot

from reportgen.errors import InputError
from reportgen.io import load_study
from reportgen.io.sequences import canonical_sequence_name, sequence_from_filename


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("T2W.nii.gz", "T2W"),
        ("t2_tse.nii", "T2W"),
        ("DWI.nii.gz", "DWI"),
        ("ADC.nii.gz", "ADC"),
        ("DCE_0.nii.gz", "DCE_0"),
        ("dce-3.nii.gz", "DCE_3"),
        ("sub-01_T2w.nii.gz", "T2W"),
        ("sub-01_ses-2_acq-b800_dwi.nii.gz", "DWI"),
        ("sub-01_ADC.nii.gz", "ADC"),
        ("sub-01_phase-2_dce.nii.gz", "DCE_2"),
        ("sub-01_DCE_1.nii.gz", "DCE_1"),
        ("lesion_mask.nii.gz", None),
        ("notes.nii.gz", None),
    ],
)
def test_sequence_names_from_files(filename, expected):
    assert sequence_from_filename(filename) == expected


def test_unknown_names_are_not_guessed():
    assert canonical_sequence_name("FLAIR") is None
    assert canonical_sequence_name("dce_12") is None  # beyond the supported phases


def _folder_study(tmp_path, names=("T2W", "DWI", "ADC", "DCE_0", "DCE_1")):
    folder = tmp_path / "study1"
    for name in names:
        save_nifti(folder / f"{name}.nii.gz", ball())
    mask = (ball(value=1, background=0) > 0).astype(np.uint8)
    save_nifti(folder / "lesion_mask.nii.gz", mask)
    return folder


def test_study_folder_reads_sequences_mask_and_missing(tmp_path):
    study = load_study(_folder_study(tmp_path))
    assert list(study.sequences) == ["T2W", "DWI", "ADC", "DCE_0", "DCE_1"]
    assert study.missing == ["DCE_2", "DCE_3"]
    assert study.lesion_mask is not None
    assert study.summary()["lesion_mask"]["labels"] == [1]
    assert study.form == "folder"


def test_bids_like_folder_with_sidecar(tmp_path):
    folder = tmp_path / "sub-01"
    save_nifti(folder / "sub-01_T2w.nii.gz", ball())
    save_nifti(folder / "sub-01_acq-b800_dwi.nii.gz", ball())
    save_nifti(folder / "sub-01_run-1_bold.nii.gz", ball())  # not a protocol sequence
    save_nifti(folder / "scan7.nii.gz", ball())
    (folder / "scan7.json").write_text(json.dumps({"sequence": "ADC"}))
    study = load_study(folder)
    assert set(study.sequences) == {"T2W", "DWI", "ADC"}
    assert any("sub-01_run-1_bold" in w for w in study.warnings)


def test_sidecar_that_contradicts_file_name_is_refused(tmp_path, cli):
    folder = tmp_path / "s"
    save_nifti(folder / "DWI.nii.gz", ball())
    (folder / "DWI.json").write_text(json.dumps({"sequence": "ADC"}))
    assert_refused(cli("inspect", folder), "DWI.json", "sidecar says ADC")


def test_four_d_file_named_by_sidecar(tmp_path):
    data = np.stack([ball(), ball() * 2, ball() * 3], axis=-1)
    path = save_nifti(tmp_path / "study.nii.gz", data)
    (tmp_path / "study.json").write_text(json.dumps({"sequences": ["T2W", "ADC", "DCE_0"]}))
    study = load_study(path)
    assert list(study.sequences) == ["T2W", "ADC", "DCE_0"]
    assert study.form == "nifti4d"
    np.testing.assert_allclose(study.sequences["ADC"].data, ball() * 2)


def test_four_d_sidecar_count_mismatch_is_refused(tmp_path, cli):
    data = np.stack([ball(), ball()], axis=-1)
    path = save_nifti(tmp_path / "study.nii.gz", data)
    (tmp_path / "study.json").write_text(json.dumps({"sequences": ["T2W", "ADC", "DCE_0"]}))
    assert_refused(cli("inspect", path), "study.json", "3 sequences", "2 volumes")


def test_four_d_without_sidecar_is_refused(tmp_path, cli):
    path = save_nifti(tmp_path / "study.nii.gz", np.stack([ball(), ball()], axis=-1))
    assert_refused(cli("inspect", path), "needs a sidecar")


def test_single_3d_file_named_by_option_or_refused(tmp_path, cli):
    path = save_nifti(tmp_path / "volume.nii.gz", ball())
    assert_refused(cli("inspect", path), "cannot tell which sequence")
    result = cli("inspect", path, "--sequence", "ADC", "--json")
    assert result.code == 0
    summary = json.loads(result.out)
    assert list(summary["sequences"]) == ["ADC"]
    assert "T2W" in summary["missing"]


def test_scl_slope_and_inter_are_applied(tmp_path):
    raw = np.arange(40 * 40 * 20, dtype=np.int16).reshape(40, 40, 20) % 1000
    path = save_nifti(tmp_path / "T2W.nii.gz", raw, dtype=np.int16, slope=2.0, inter=10.0)
    assert nib.load(str(path)).header.get_data_dtype() == np.int16
    study = load_study(path)
    np.testing.assert_allclose(study.sequences["T2W"].data, raw * 2.0 + 10.0)


def test_a_few_nan_voxels_are_zeroed_with_a_warning(tmp_path):
    data = ball()
    data[0, 0, 0] = np.nan
    data[1, 0, 0] = np.inf
    study = load_study(save_nifti(tmp_path / "ADC.nii.gz", data))
    assert np.isfinite(study.sequences["ADC"].data).all()
    assert any("2 NaN/inf voxels" in w for w in study.warnings)


def test_mostly_nan_volume_is_refused(tmp_path, cli):
    data = np.full((20, 20, 10), np.nan, dtype=np.float32)
    data[:5] = 1.0
    assert_refused(cli("inspect", save_nifti(tmp_path / "T2W.nii.gz", data)), "NaN or infinite")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        ("truncated", "truncated"),
        ("garbage", "not a readable NIfTI"),
        ("empty_file", "file is empty"),
        ("two_d", "expected 3D"),
        ("five_d", "expected 3D or 4D"),
        ("single_slice", "single slice"),
        ("three_slices", "a volume needs at least 4"),
        ("empty_folder", "folder is empty"),
        ("no_sequences", "no file is named as an MRI sequence"),
        ("bad_sidecar_json", "not valid JSON"),
        ("unknown_sidecar_name", "unknown sequence name"),
        ("missing", "no such file"),
        ("two_masks", "two lesion masks"),
    ],
)
def test_unreadable_inputs_are_refused_cleanly(tmp_path, cli, make, fragment):
    work = tmp_path / "in"
    work.mkdir()
    target = work / "T2W.nii.gz"
    if make == "truncated":
        save_nifti(target, np.random.default_rng(0).normal(size=(40, 40, 20)).astype(np.float32))
        raw = target.read_bytes()
        target.write_bytes(raw[: len(raw) // 2])
    elif make == "garbage":
        target = work / "T2W.nii"
        target.write_bytes(b"this is not a nifti file" * 20)
    elif make == "empty_file":
        target.write_bytes(b"")
    elif make == "two_d":
        save_nifti(target, np.ones((30, 30), dtype=np.float32))
    elif make == "five_d":
        save_nifti(target, np.ones((10, 10, 5, 2, 2), dtype=np.float32))
    elif make == "single_slice":
        save_nifti(target, np.ones((30, 30, 1), dtype=np.float32))
    elif make == "three_slices":
        save_nifti(target, np.ones((30, 30, 3), dtype=np.float32))
    elif make == "empty_folder":
        target = work / "empty"
        target.mkdir()
    elif make == "no_sequences":
        save_nifti(work / "notes.nii.gz", ball())
        target = work
    elif make == "bad_sidecar_json":
        save_nifti(target, ball())
        (work / "T2W.json").write_text("{not json")
        target = work
    elif make == "unknown_sidecar_name":
        save_nifti(work / "scan.nii.gz", ball())
        (work / "scan.json").write_text(json.dumps({"sequence": "FLAIR"}))
        target = work / "scan.nii.gz"
    elif make == "missing":
        target = work / "nope.nii.gz"
    elif make == "two_masks":
        save_nifti(target, ball())
        save_nifti(work / "lesion_mask.nii.gz", ball(value=1, background=0))
        save_nifti(work / "seg.nii.gz", ball(value=1, background=0))
        target = work
    before = tree_snapshot(tmp_path)
    assert_refused(cli("inspect", target), fragment)
    assert tree_snapshot(tmp_path) == before


def test_console_script_prints_one_line_and_exit_2(tmp_path):
    """The installed entry point, not just main(): no traceback reaches the user."""

    bad = tmp_path / "T2W.nii"
    bad.write_bytes(b"\x00" * 400)
    exe = str(Path(sys.executable).parent / "reportgen")
    assert Path(exe).exists(), "the console script is installed with the package"
    proc = subprocess.run([exe, "inspect", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    debug = subprocess.run(
        [exe, "--debug", "inspect", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert debug.returncode == 2 and "Traceback" in debug.stderr


# Real files written outside this project -------------------------------------------------


def test_nibabel_big_endian_nifti(tmp_path):
    src = DATA / "nibabel" / "anatomical.nii"
    assert nib.load(str(src)).header.endianness == ">"
    study = load_study(src, sequence="T2W")
    expected = nib.load(str(src)).get_fdata()
    np.testing.assert_allclose(study.sequences["T2W"].data, expected)


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz"])
def test_nibabel_4d_and_nifti2_with_sidecar(tmp_path, name):
    path = tmp_path / name
    shutil.copy(DATA / "nibabel" / name, path)
    (tmp_path / name.replace(".nii.gz", ".json")).write_text(
        json.dumps({"sequences": ["DCE_0", "DCE_1"]})
    )
    study = load_study(path)
    source = nib.load(str(DATA / "nibabel" / name))
    assert list(study.sequences) == ["DCE_0", "DCE_1"]
    np.testing.assert_allclose(study.sequences["DCE_1"].data, source.get_fdata()[..., 1])
    np.testing.assert_allclose(study.sequences["DCE_0"].affine, source.affine)


def test_gzip_member_corruption_is_refused(tmp_path, cli):
    """Flip bytes inside the compressed stream (not just truncate it)."""
    path = save_nifti(tmp_path / "T2W.nii.gz", ball())
    raw = bytearray(path.read_bytes())
    for i in range(60, min(len(raw) - 10, 400)):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError):
        load_study(path)


def test_console_script_quick_exit_keeps_output_and_status():
    """The installed script leaves without interpreter teardown (`reportgen.cli.entry`):
    output to a pipe (block-buffered) still arrives whole, with the command's status."""

    exe = str(Path(sys.executable).parent / "reportgen")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    from reportgen.cli import app

    assert proc.returncode == 0
    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    assert len(names) > 10 and all(name in proc.stdout for name in names)
    assert "corrections" in proc.stdout  # the last group listed
    missing = subprocess.run([exe, "no-such-command"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no-such-command" in missing.stderr
