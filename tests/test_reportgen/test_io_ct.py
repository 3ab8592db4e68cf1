"""CT studies read as CT: Hounsfield units, phases from the headers, never an MRI reader.

The real study is a TotalSegmentator test CT (Apache-2.0 / CC BY 4.0): 20 JPEG 2000
slices of an abdomen whose anonymiser blanked every UID (Study, Series, SOP class), and
whose Contrast/Bolus module says "APPLIED" with a volume and dose of 0 (a PET/CT
export): its images are non-contrast, so nothing may call it enhanced.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
from conftest import DATA
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from reportgen.io import load_study
from reportgen.io.dicom import first_study_uid
from reportgen.io.dicom_headers import SeriesGroup, classify_series, contrast_agent
from reportgen.report.assessable import acquired_families

CT_DICOM = DATA / "totalsegmentator_ct" / "dicom"
CT_NIFTI = DATA / "totalsegmentator_ct" / "example_ct.nii.gz"


def test_real_ct_reads_in_hounsfield_units_as_a_ct_of_unknown_phase():
    study = load_study(CT_DICOM)
    assert study.modality == "CT" and list(study.sequences) == ["CT"]
    volume = study.sequences["CT"]
    assert volume.shape == (512, 512, 20)
    assert np.allclose(volume.spacing, (0.9765625, 0.9765625, 2.0))
    # stored value x RescaleSlope + RescaleIntercept, at the same voxel of one slice
    first = pydicom.dcmread(sorted(CT_DICOM.iterdir())[0])
    stored = first.pixel_array.astype(float) * float(first.RescaleSlope) + float(
        first.RescaleIntercept
    )
    row, col = 200, 300  # a pixel inside the body, at its world position (LPS -> RAS)
    world_px = (
        np.array(first.ImagePositionPatient, float)
        + col * np.array(first.ImageOrientationPatient[:3], float) * float(first.PixelSpacing[1])
        + row * np.array(first.ImageOrientationPatient[3:], float) * float(first.PixelSpacing[0])
    )
    ras = np.array([-world_px[0], -world_px[1], world_px[2], 1.0])
    vi, vj, vk = np.rint(np.linalg.inv(volume.affine) @ ras)[:3].astype(int)
    assert volume.data[vi, vj, vk] == pytest.approx(stored[row, col])
    assert volume.data.min() == -1024.0  # air outside the field of view, in HU
    # zero dose with an agent "APPLIED": nothing establishes contrast, so no phase
    reason = study.metadata["series"]["CT"]["reason"]
    assert "volume and dose of 0" in reason
    assert acquired_families(study.sequences) == {"ct"}
    assert study.missing == ["CT_PANC", "CT_PV"]
    assert study.study_id.startswith("study-")


def test_real_ct_is_refused_by_every_mri_model_even_with_force(tmp_path, cli):
    for extra in (("--template", "birads_mri"), ("--template", "orads_mri", "--force")):
        for study in (CT_DICOM, CT_NIFTI):
            refused = cli("generate", study, "--out", tmp_path / "out", "--no-explain", *extra)
            assert refused.code == 2, refused.err
            assert "CT" in refused.err and "no option drafts it" in refused.err
            assert len(refused.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_real_ct_goes_to_the_pancreas_reader_which_states_what_a_plain_ct_cannot_show(
    tmp_path, cli
):
    """The real CT (no contrast) is routed to the pancreas reader, whose coarse outline
    reads it as an abdomen unlike every phantom: refused in one line unless forced, then
    drafted with that warning and the plain statement that a non-contrast CT cannot
    show or exclude a pancreatic mass or assess vessel contact. The 20-slice DICOM
    export (38 mm) cannot hold the pancreas: refused, forced or not."""
    refused = cli("generate", CT_NIFTI, "--no-explain")
    assert refused.code == 2 and "CT is unlike every study" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    out = tmp_path / "ct.json"
    forced = cli("generate", CT_NIFTI, "--no-explain", "--force", "--out", out)
    assert forced.code == 0, forced.err
    report = json.loads(out.read_text())
    assert report["template"]["id"] == "pancreas_ct"
    assert report["derived"]["resectability"]["value"] == "resectability_not_assessable"
    assert all(f["fields"]["type"]["value"] != "pancreatic_solid_mass" for f in report["findings"])
    assert not {"liver_metastases", "peritoneal_nodules"} & set(report["fields"])
    text = cli("render", out, "--format", "text").out
    assert "A non-contrast CT cannot show or exclude a pancreatic mass" in text
    assert "trained on synthetic phantoms" in text
    assert any("not meaningful" in p["message"] for p in report["validation"]["problems"])
    for extra in ((), ("--force",)):
        slab = cli("generate", CT_DICOM, "--no-explain", *extra)
        assert slab.code == 2 and len(slab.err.strip().splitlines()) == 1
    assert "covers 38 mm craniocaudally" in slab.err


def test_real_ct_nifti_is_read_by_its_name_and_an_unnamed_one_gets_a_ct_hint(tmp_path, cli):
    study = load_study(CT_NIFTI)
    assert study.modality == "CT" and list(study.sequences) == ["CT"]
    unnamed = tmp_path / "scan.nii.gz"
    shutil.copy(CT_NIFTI, unnamed)
    refused = cli("inspect", unnamed)
    assert refused.code == 2 and "Hounsfield" in refused.err and "CT_PV" in refused.err
    named = load_study(unnamed, sequence="CT_PV")
    assert list(named.sequences) == ["CT_PV"] and acquired_families(["CT_PV"]) == {
        "ct",
        "ct_contrast",
    }
    shown = cli("inspect", CT_DICOM, "--json")
    summary = json.loads(shown.out)
    assert summary["modality"] == "CT" and summary["missing"] == ["CT_PANC", "CT_PV"]
    assert "dose of 0" in summary["sequences"]["CT"]["named_because"]
    assert cli("inspect", CT_DICOM).code == 0  # the table, phases named in words


def _header(**values) -> SeriesGroup:
    ds = Dataset()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    for key, value in values.items():
        setattr(ds, key, value)
    return SeriesGroup(uid="1.2.3", files=[], headers=[ds])


@pytest.mark.parametrize(
    ("headers", "phase"),
    [
        ({"SeriesDescription": "Abdomen PV 3.0 B30f"}, "CT_PV"),
        ({"SeriesDescription": "Portal venous phase"}, "CT_PV"),
        ({"SeriesDescription": "Pancreas phase 1.0"}, "CT_PANC"),
        ({"ProtocolName": "Late arterial"}, "CT_PANC"),
        ({"SeriesDescription": "Abdomen nativ 5.0"}, "CT_NC"),
        ({"SeriesDescription": "Delayed 3 min"}, None),
        ({"SeriesDescription": "Topogram 0.6 T20s"}, None),
        ({"ContrastBolusAgent": "NONE"}, "CT_NC"),
        ({"ContrastBolusAgent": ""}, "CT"),  # type 2, empty: unknown, not "none"
        ({"SeriesDescription": "Body 3.0"}, "CT"),  # no agent, no phase in its name
        (
            {
                "ContrastBolusAgent": "Omnipaque 350",
                "ContrastBolusVolume": "100",
                "ContrastBolusStartTime": "101500.00",
                "AcquisitionTime": "101545.00",
            },
            "CT_PANC",
        ),
        (
            {
                "ContrastBolusAgent": "Omnipaque 350",
                "ContrastBolusStartTime": "101500.00",
                "AcquisitionTime": "101610.00",
            },
            "CT_PV",
        ),
        (
            {
                "ContrastBolusAgent": "Ultravist 370",
                "ContrastBolusStartTime": "101500.00",
                "AcquisitionTime": "101800.00",
            },
            None,  # 180 s: a delayed phase
        ),
        ({"ContrastBolusAgent": "Ultravist 370"}, "CT"),  # agent, but no times
        (
            {
                "ContrastBolusAgent": "APPLIED",
                "ContrastBolusVolume": "0",
                "ContrastBolusTotalDose": "0",
                "ContrastBolusStartTime": "101500.00",
                "AcquisitionTime": "101610.00",
            },
            "CT",  # contradicting headers establish nothing
        ),
    ],
)
def test_ct_phase_from_the_headers(headers, phase):
    found, why = classify_series(_header(**headers))
    assert found == phase, why
    assert why


def test_localizer_image_type_is_not_a_phase_and_iodinated_agents_are_named():
    group = _header()
    group.first.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    assert classify_series(group)[0] is None
    assert contrast_agent("Omnipaque 350") == "iohexol"
    assert contrast_agent("Visipaque 320") == "iodixanol"
    assert contrast_agent("Dotarem") == "gadoterate meglumine"
    assert contrast_agent("APPLIED") is None


def _copy_as_phase(src, dst, description: str, series_uid: str, frame: str | None = None):
    dst.mkdir(parents=True)
    for k, path in enumerate(sorted(src.iterdir())):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = description
        ds.SOPInstanceUID = generate_uid()
        if frame is not None:
            ds.FrameOfReferenceUID = frame
        ds.save_as(dst / f"{k:03d}.dcm")


def test_a_two_phase_ct_reads_each_phase_on_its_own(tmp_path):
    study_dir = tmp_path / "study"
    _copy_as_phase(CT_DICOM, study_dir / "a", "Pancreas phase 1.0", generate_uid())
    _copy_as_phase(CT_DICOM, study_dir / "b", "Portal venous 3.0", generate_uid())
    study = load_study(study_dir)
    assert list(study.sequences) == ["CT_PANC", "CT_PV"] and study.missing == []
    assert acquired_families(study.sequences) == {"ct", "ct_contrast"}


def test_two_anonymised_studies_are_never_taken_for_one(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    _copy_as_phase(CT_DICOM, first, "Body", generate_uid(), frame=generate_uid())
    _copy_as_phase(CT_DICOM, second, "Body", generate_uid(), frame=generate_uid())
    assert first_study_uid(first) != first_study_uid(second)
    assert first_study_uid(first).startswith("unnamed-study")


def test_a_ct_of_unknown_phase_is_prepared_in_the_non_contrast_channel_in_one_window():
    from reportgen.preprocessing import CT_CHANNELS, CT_WINDOW_HU, prepare_ct

    ready = prepare_ct(load_study(CT_NIFTI))
    assert ready.present.tolist() == [True, False, False] and CT_CHANNELS[0] == "CT_NC"
    assert ready.image.min() >= 0.0 and ready.image.max() <= 1.0
    assert not ready.image[1:].any()
    # HU are physical: fat (-100 HU) lands where the window puts it, not at a percentile
    fat = (-100.0 - CT_WINDOW_HU[0]) / (CT_WINDOW_HU[1] - CT_WINDOW_HU[0])
    body = ready.image[0][(ready.image[0] > 0.02) & (ready.image[0] < 0.98)]
    assert abs(float(np.percentile(body, 25)) - fat) < 0.05  # a quarter of this abdomen is fat
    assert (ready.image[0] == 0.0).mean() > 0.1 and (ready.image[0] == 1.0).any()  # air, bone
    assert np.allclose(np.diag(ready.affine)[:3], ready.grid.spacing)
