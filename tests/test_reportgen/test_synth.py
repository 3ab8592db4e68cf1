"""Synthetic bench: deterministic, valid truth, and findings that really show in the images."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from conftest import assert_refused, tree_snapshot
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from reportgen.data import read_manifest
from reportgen.data.truth import lesion_labels
from reportgen.io import load_study
from reportgen.measure.breast import DEPTH_THIRDS, breast_position, depth_third, find_landmarks
from reportgen.report import Report, validate_report
from reportgen.synth import SynthOptions, synth_dataset
from reportgen.synth.pelvis import Layout, vagina_third_z

N = {"breast": 24, "cervix": 12, "endometrium": 12}
# SHA-256 of breast seed 5 study 0's DCE_1 as written before the clinical protocol existed.
EXPECTED_LOW_RESOLUTION_DCE_1 = "e6eb970db90541b27c6d77f9b9d106c44b75aba556193d4f4ff96bc652b41d8b"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for domain, n in N.items():
        folder = root / domain
        synth_dataset(
            folder,
            n,
            SynthOptions(protocol="low_resolution", domain=domain, seed=11, malignant_fraction=0.6),
            workers=2,
        )
        out[domain] = (folder, read_manifest(folder))
    return out


def _digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synth_dataset(a, 3, SynthOptions(protocol="low_resolution", domain="breast", seed=5), workers=1)
    synth_dataset(b, 3, SynthOptions(protocol="low_resolution", domain="breast", seed=5), workers=2)
    synth_dataset(c, 3, SynthOptions(protocol="low_resolution", domain="breast", seed=6), workers=1)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_manifest_rows_are_complete_and_truth_is_valid(datasets):
    for domain, (folder, rows) in datasets.items():
        assert len(rows) == N[domain]
        for row in rows:
            report = Report.model_validate(row["report"])
            assert validate_report(report).valid
            assert row["text"]["en"].strip() and row["text"]["zh"].strip()
            assert "FINDINGS" in row["text"]["en"] and "影像所见" in row["text"]["zh"]
            study = load_study(folder / row["dir"])
            assert study.missing == [] and study.lesion_mask is not None
            assert "not for clinical use" in report.notice


def _voxels_world(mask_img, label):
    idx = np.argwhere(np.asanyarray(mask_img.dataobj) == label)
    return idx, nib.affines.apply_affine(mask_img.affine, idx)


def _feret(points: np.ndarray) -> float:
    if len(points) < 5:
        return float(pdist(points).max()) if len(points) > 1 else 0.0
    hull = points[ConvexHull(points).vertices]
    return float(pdist(hull).max())


def test_mask_agrees_with_reported_size_within_one_voxel(datasets):
    checked = 0
    for _domain, (folder, rows) in datasets.items():
        for row in rows:
            mask = nib.load(str(folder / row["mask"]))
            spacing = max(mask.header.get_zooms()[:3])
            for finding, lesion in zip(
                row["report"]["findings"], row["truth"]["lesions"], strict=True
            ):
                kind = finding["fields"].get("type", {}).get("value", "tumour")
                if kind in ("non_mass_enhancement", "focus"):
                    continue  # NME extent is geographic; a focus is below 2 voxels
                _, world = _voxels_world(mask, lesion["label"])
                measured = _feret(world)
                reported = finding["fields"]["size_mm"]["value"]
                # Feret between voxel centres runs up to one voxel short of the surface.
                assert abs(measured + spacing * 0.5 - reported) <= spacing + 0.5, (
                    row["id"],
                    measured,
                    reported,
                    spacing,
                )
                checked += 1
    assert checked >= 15


def _clock_of(offset_x: float, offset_z: float) -> int:
    angle = np.degrees(np.arctan2(-offset_x, offset_z)) % 360  # 12 o'clock = +z, 3 o'clock = -x
    hour = round(angle / 30.0) % 12
    return 12 if hour == 0 else hour


def test_breast_mask_agrees_with_reported_location(datasets):
    folder, rows = datasets["breast"]
    checked = 0
    for row in rows:
        mask = nib.load(str(folder / row["mask"]))
        for finding, lesion in zip(row["report"]["findings"], row["truth"]["lesions"], strict=True):
            f = {k: v["value"] for k, v in finding["fields"].items()}
            _, world = _voxels_world(mask, lesion["label"])
            centre = world.mean(axis=0)
            assert ("right" if centre[0] > 0 else "left") == f["laterality"]
            base_x = 65.0 if f["laterality"] == "right" else -65.0
            hour = _clock_of(centre[0] - base_x, centre[2])
            reported = int(f["clock"].split("_")[1])
            assert min((hour - reported) % 12, (reported - hour) % 12) <= 1, (
                row["id"],
                hour,
                reported,
            )
            checked += 1
    assert checked >= 10


def test_breast_depth_truth_is_the_lexicon_third_the_reader_measures(tmp_path):
    """On the clinical protocol the truth's depth is the third of the line from the chest
    wall (pectoralis) behind the nipple to the nipple, as the lexicon counts it and
    `measure.breast` measures it: at every true lesion centre the measured third is the
    stated one. (Counted from the breast's base, 18 mm in front of the muscle, 7 of 49
    clinical development lesions measured a third deeper than stated.)"""
    synth_dataset(tmp_path, 10, SynthOptions(domain="breast", seed=4, protocol="clinical"), 2)
    checked = 0
    for row in read_manifest(tmp_path):
        if not row["truth"]["lesions"]:
            continue
        t2 = load_study(tmp_path / row["dir"]).sequences["T2W"]
        marks = find_landmarks(np.asarray(t2.data), np.asarray(t2.affine))
        for finding, lesion in zip(row["report"]["findings"], row["truth"]["lesions"], strict=True):
            position = breast_position(tuple(lesion["centre_mm"]), marks)
            stated = finding["fields"]["depth"]["value"]
            assert depth_third(position.depth_fraction) == stated, (row["id"], position)
            checked += 1
    assert checked >= 6


def test_breast_lesions_are_placed_in_the_lexicon_third_they_state():
    """Placement counts depth along the line from the pectoralis behind the nipple to the
    nipple (`depth_axis`), every lesion inside its stated third, clear of the thirds'
    boundaries where measurement could not tell."""
    from reportgen.synth import breast

    rng = np.random.default_rng(0)
    fractions = {third: [] for third in DEPTH_THIRDS}
    for _ in range(300):
        case = breast.sample_case(rng, 0.5)
        for lesion in breast.place_lesions(case, rng, "clinical"):
            wall, apex = breast.depth_axis(case, lesion.fields["laterality"])
            fraction = (lesion.centre[1] - wall) / (apex - wall)
            fractions[lesion.fields["depth"]].append(fraction)
    for k, third in enumerate(DEPTH_THIRDS):
        assert len(fractions[third]) >= 20, third
        assert k / 3 + 0.02 < min(fractions[third]) <= max(fractions[third]) < (k + 1) / 3 - 0.02


def _mean(img_path, mask_bool):
    return float(np.asanyarray(nib.load(str(img_path)).get_fdata())[mask_bool].mean())


def test_breast_attributes_are_visible(datasets):
    folder, rows = datasets["breast"]
    adc = {"diffusion_restricted": [], "diffusion_not_restricted": []}
    late_change = {"delayed_washout": [], "delayed_persistent": [], "delayed_plateau": []}
    t2 = {"t2_hyperintense": [], "t2_hypointense": []}
    for row in rows:
        mask = np.asanyarray(nib.load(str(folder / row["mask"])).dataobj)
        seq = {k: folder / v for k, v in row["sequences"].items()}
        for finding, lesion in zip(row["report"]["findings"], row["truth"]["lesions"], strict=True):
            f = {k: v["value"] for k, v in finding["fields"].items()}
            inside = mask == lesion["label"]
            if inside.sum() < 4:
                continue
            adc[f["diffusion"]].append(_mean(seq["ADC"], inside))
            if f["t2_signal"] in t2:
                t2[f["t2_signal"]].append(_mean(seq["T2W"], inside) / _mean(seq["T2W"], mask == 0))
            if "kinetics_delayed" in f:
                e1, _e2, e3 = (_mean(seq[f"DCE_{k}"], inside) for k in (1, 2, 3))
                late_change[f["kinetics_delayed"]].append((e3 - e1) / e1)
    assert max(adc["diffusion_restricted"]) < 1150 < min(adc["diffusion_not_restricted"])
    assert max(late_change["delayed_washout"]) < 0 < min(late_change["delayed_persistent"])
    if t2["t2_hyperintense"] and t2["t2_hypointense"]:
        assert min(t2["t2_hyperintense"]) > max(t2["t2_hypointense"])


def test_cervix_staging_criteria_are_geometry(datasets):
    folder, rows = datasets["cervix"]
    third = vagina_third_z(Layout())
    for row in rows:
        f = {k: v["value"] for k, v in row["report"]["fields"].items()}
        mask = nib.load(str(folder / row["mask"]))
        _, tumour = _voxels_world(mask, 1)
        _, extension = _voxels_world(mask, 2)
        everything = np.concatenate([tumour, extension]) if len(extension) else tumour
        lateral = np.abs(everything[:, 0]).max()
        assert (lateral > 20.0) == f["parametrial_invasion"], (row["id"], lateral)
        lowest = everything[:, 2].min()
        if f["vaginal_involvement"] == "vagina_lower_third":
            assert lowest < third
        else:
            assert lowest > third - 3.0
        _, nodes = _voxels_world(mask, 3)
        assert (len(nodes) > 0) == (f["pelvic_nodes"] or f["paraaortic_nodes"])


def test_endometrium_invasion_depth_is_geometry(datasets):
    _folder, rows = datasets["endometrium"]
    for row in rows:
        finding = row["report"]["findings"][0]["fields"]
        fraction = row["truth"]["details"]["invasion_fraction"]
        assert (fraction >= 0.5) == (
            finding["myometrial_invasion"]["value"] == "myometrial_invasion_deep"
        )


def test_scanner_shift_changes_the_acquisition(tmp_path):
    synth_dataset(
        tmp_path / "s",
        2,
        SynthOptions(protocol="low_resolution", domain="cervix", seed=1, shift="scanner"),
        workers=1,
    )
    row = read_manifest(tmp_path / "s")[0]
    assert row["acquisition"]["storage"] == "LPS" and abs(row["acquisition"]["oblique_deg"]) >= 5
    study = load_study(tmp_path / "s" / row["dir"])
    assert study.sequences["T2W"].is_oblique and study.sequences["T2W"].orientation.startswith("L")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--domain", "prostate"], "unknown domain"),
        (["--n", "0"], "--n must be at least 1"),
        (["--shift", "vendor"], "unknown --shift"),
        (["--malignant-fraction", "1.5"], "between 0 and 1"),
        (["--protocol", "research"], "unknown --protocol"),
        (["--domain", "cervix", "--protocol", "clinical"], "breast protocol"),
    ],
)
def test_synth_refuses_bad_options(tmp_path, cli, args, fragment):
    before = tree_snapshot(tmp_path)
    assert_refused(cli("synth", tmp_path / "out", *args), fragment)
    assert tree_snapshot(tmp_path) == before


def test_synth_never_overwrites_a_dataset(tmp_path, cli):
    assert cli("synth", tmp_path / "d", "--n", "1", "--workers", "1").code == 0
    before = tree_snapshot(tmp_path)
    assert_refused(cli("synth", tmp_path / "d", "--n", "1"), "already holds a manifest")
    assert tree_snapshot(tmp_path) == before
    assert (
        json.loads((tmp_path / "d" / "manifest.jsonl").read_text().splitlines()[0])["domain"]
        == "breast"
    )


def test_a_lesion_that_fits_nowhere_is_left_out_not_painted_at_the_body_centre():
    from reportgen.synth import breast
    from reportgen.synth.acquisition import sample_acquisition

    rng = np.random.default_rng(3)
    case = breast.sample_case(rng, malignant_fraction=1.0)
    while not case.lesions:
        case = breast.sample_case(rng, malignant_fraction=1.0)
    case.lesions[0].radius = 400.0  # larger than any breast
    canvas = breast.render(case, sample_acquisition(rng, "breast", None), rng)
    assert not (canvas.labels == case.lesions[0].label).any()


def test_ovarian_phantoms_are_deterministic_and_valid_against_orads(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synth_dataset(
        a,
        10,
        SynthOptions(protocol="low_resolution", domain="ovary", seed=4, malignant_fraction=0.5),
        workers=1,
    )
    synth_dataset(
        b,
        10,
        SynthOptions(protocol="low_resolution", domain="ovary", seed=4, malignant_fraction=0.5),
        workers=2,
    )
    assert _digest(a) == _digest(b)
    rows = read_manifest(a)
    scores = set()
    for row in rows:
        report = Report.model_validate(row["report"])
        assert report.template.id == "orads_mri" and validate_report(report).valid
        scores.add(report.derived["risk_score"].value)
        mask = np.asanyarray(nib.load(a / row["mask"]).dataobj)
        for finding, lesion in zip(report.findings, row["truth"]["lesions"], strict=True):
            # every reported lesion is in the images, and its solid tissue has its own label
            assert np.isin(mask, lesion_labels(lesion)).any()
            assert bool(lesion["parts"]) == finding.fields["solid_tissue"].value
            assert finding.fields["size_mm"].value == round(lesion["size_mm_exact"])
            solid_only = finding.fields["composition"].value == "composition_solid"
            assert (mask == lesion["label"]).any() != solid_only  # a solid lesion: all solid
        if report.fields["peritoneal_implants"].value:
            assert (mask == 5).any()
        assert "O-RADS MRI" in row["text"]["en"] and "O-RADS MRI" in row["text"]["zh"]
    assert len(scores) >= 3  # the draw covers the scale, not one score


def test_ovarian_lesion_features_show_in_the_images(tmp_path):
    """Fluid types differ by T1/T2 signal, solid tissue enhances by its curve, fat is dark
    on DWI: what the O-RADS fields say is what a reader could measure."""
    from reportgen.synth.ovary import FLUID, LIPID, SOLID

    assert FLUID["fluid_endometriotic"].t1 > FLUID["fluid_simple"].t1 + 0.5
    assert FLUID["fluid_endometriotic"].t2 < FLUID["fluid_simple"].t2 - 0.5
    assert SOLID["tic_high_risk"].e1 > SOLID["tic_intermediate_risk"].e1 > SOLID["tic_low_risk"].e1
    assert LIPID.s0 < 0.1
    folder = tmp_path / "ov"
    synth_dataset(
        folder,
        16,
        SynthOptions(protocol="low_resolution", domain="ovary", seed=8, malignant_fraction=1.0),
    )
    rises = {}
    for row in read_manifest(folder):
        study = load_study(folder / row["dir"])
        mask = np.asanyarray(nib.load(folder / row["mask"]).dataobj)
        for finding, lesion in zip(row["report"]["findings"], row["truth"]["lesions"], strict=True):
            tic = finding["fields"].get("tic", {}).get("value")
            if tic and finding["fields"]["composition"]["value"] == "composition_solid":
                inside = mask == lesion["parts"][0]
                pre = study.sequences["DCE_0"].data[inside].mean()
                rises.setdefault(tic, []).append(study.sequences["DCE_1"].data[inside].mean() / pre)
    if "tic_high_risk" in rises and "tic_intermediate_risk" in rises:
        assert min(rises["tic_high_risk"]) > max(rises["tic_intermediate_risk"])
    assert rises  # the malignant draw includes solid tumours


def test_reported_nodes_are_inside_the_field_of_view(tmp_path):
    """A para-aortic node the slab misses is not reported: the truth is what the images show."""
    from reportgen.synth.generate import _gynae, study_rng
    from reportgen.synth.gynae import NODES, PARAAORTIC_MIN_Z

    options = SynthOptions(protocol="low_resolution", domain="cervix", seed=3, shift="scanner")
    for index in range(40):
        _, canvas, fields, _, _ = _gynae(study_rng(options, index), options)
        index_z = np.argwhere(canvas.labels == NODES) @ canvas.grid.affine[2, :3]
        z = index_z + canvas.grid.affine[2, 3]
        assert fields["paraaortic_nodes"] == bool(np.any(z > PARAAORTIC_MIN_Z))


def test_a_dilated_ureter_is_labelled_as_anatomy_only_with_hydronephrosis():
    """Hydronephrosis is read from the ureter it dilates: the phantom labels that ureter
    (anatomy, not tumour: `lesion_mask` clears it from the findings' extents)."""
    from reportgen.data.truth import lesion_mask
    from reportgen.synth.generate import _gynae, study_rng
    from reportgen.synth.gynae import DILATED_URETER

    options = SynthOptions(protocol="low_resolution", domain="cervix", seed=3)
    seen = set()
    for index in range(40):
        _, canvas, fields, _, extra = _gynae(study_rng(options, index), options)
        labelled = bool(np.any(canvas.labels == DILATED_URETER))
        assert labelled == fields["hydronephrosis"]
        assert extra["anatomy_labels"] == {"dilated_ureter": DILATED_URETER}
        assert not np.any(lesion_mask(canvas.labels, extra) == DILATED_URETER)
        seen.add(labelled)
    assert seen == {False, True}
    endometrium = SynthOptions(protocol="low_resolution", domain="endometrium", seed=3)
    assert _gynae(study_rng(endometrium, 0), endometrium)[4]["anatomy_labels"] == {}


@pytest.fixture(scope="module")
def clinical(tmp_path_factory):
    """Breast phantoms on the clinical protocol: the plain draw and another scanner's."""
    root = tmp_path_factory.mktemp("clinical")
    synth_dataset(root / "site", 2, SynthOptions(domain="breast", seed=3, protocol="clinical"), 2)
    shifted = SynthOptions(domain="breast", seed=3, protocol="clinical", shift="scanner")
    synth_dataset(root / "scanner", 1, shifted, workers=1)
    return root


def test_clinical_protocol_writes_each_series_on_its_accredited_grid(clinical):
    """DCE at <= 1 mm in-plane and <= 3 mm slices (ACR BMRAP), T2W about 1 mm in-plane
    with thicker slices, DWI/ADC coarser; one field of view and centre for all, as one
    scanner session writes them; another scanner's protocol is accredited too."""
    for name, shifted in (("site", False), ("scanner", True)):
        for row in read_manifest(clinical / name):
            study = load_study(clinical / name / row["dir"])
            spacing = {s: np.asarray(v.spacing) for s, v in study.sequences.items()}
            for phase in ("DCE_0", "DCE_1", "DCE_2", "DCE_3"):
                assert spacing[phase][:2].max() <= 1.0 and spacing[phase][2] <= 3.0, spacing
            assert spacing["T2W"][:2].max() <= 1.0 and spacing["T2W"][2] >= spacing["DCE_0"][2]
            assert spacing["DWI"][:2].min() >= 1.5 and 4.0 <= spacing["DWI"][2] <= 5.0
            assert np.allclose(spacing["ADC"], spacing["DWI"])
            centres = [
                v.affine[:3, :3] @ ((np.asarray(v.data.shape) - 1) / 2) + v.affine[:3, 3]
                for v in study.sequences.values()
            ]
            assert np.ptp(np.asarray(centres), axis=0).max() < 0.01  # one centre
            assert row["acquisition"]["protocol"] == "clinical"
            assert study.sequences["T2W"].is_oblique == shifted


def test_clinical_truth_mask_is_on_the_dce_grid_and_measures_in_mm(clinical):
    """The truth lives on the painted (DCE) grid; its lesions keep their size and place in
    world millimetres: centroid at the drawn centre, extent the reported size."""
    checked = 0
    for row in read_manifest(clinical / "site"):
        mask = nib.load(str(clinical / "site" / row["mask"]))
        dce = nib.load(str(clinical / "site" / row["sequences"]["DCE_1"]))
        assert np.allclose(mask.affine, dce.affine) and mask.shape == dce.shape
        for finding, lesion in zip(row["report"]["findings"], row["truth"]["lesions"], strict=True):
            _, world = _voxels_world(mask, lesion["label"])
            assert np.linalg.norm(world.mean(axis=0) - lesion["centre_mm"]) < 1.5
            if finding["fields"]["type"]["value"] in ("mass", "breast_cyst"):
                reported = finding["fields"]["size_mm"]["value"]
                assert abs(_feret(world) + 0.45 - reported) <= 1.5, (row["id"], reported)
            checked += 1
    assert checked >= 1


def test_low_resolution_protocol_is_byte_for_byte_the_phantoms_models_were_trained_on(tmp_path):
    """The clinical protocol (its drawing, its lexicon depth placement) must not move a
    byte of the low-resolution phantoms (every bundled model's training data and the
    golden drafts' studies)."""
    a = tmp_path / "a"
    synth_dataset(a, 1, SynthOptions(protocol="low_resolution", domain="breast", seed=5), workers=1)
    digest = _digest(a)["breast-s5-00000/DCE_1.nii.gz"]
    assert digest == EXPECTED_LOW_RESOLUTION_DCE_1


def test_each_domain_has_its_own_default_protocol():
    """Breast phantoms are acquired as an accredited clinical protocol unless the low-
    resolution one is asked for by name; the pelvic phantoms have one protocol."""
    assert SynthOptions(domain="breast").protocol == "clinical"
    assert SynthOptions(domain="breast", protocol="low_resolution").protocol == "low_resolution"
    for domain in ("cervix", "endometrium", "ovary"):
        assert SynthOptions(domain=domain).protocol == "low_resolution"
