"""Lesions found at the acquisition's own resolution: blob proposals in the breast's
enhancement and fluid maps, and the crop reader's gate deciding which are lesions."""

from __future__ import annotations

import numpy as np

from reportgen.io.study import Study, Volume
from reportgen.measure.proposals import blob_peaks, propose

SPACING = (0.9, 0.9, 2.0)
SHAPE = (90, 90, 36)  # 81 x 81 x 72 mm
FOCUS_MM = np.array([-12.0, 6.0, -8.0])
CYST_MM = np.array([15.0, -10.0, 10.0])


def _affine(spacing, shape) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -np.asarray(spacing) * (np.asarray(shape) - 1) / 2  # centred on 0
    return affine


def _ball(shape, affine, centre, radius) -> np.ndarray:
    index = np.indices(shape).reshape(3, -1).T
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return (np.linalg.norm(world - centre, axis=1) <= radius).reshape(shape)


def _breast_study(seed: int = 0) -> Study:
    """Fat (bright on T1 and T2W), a 4 mm enhancing focus and a 12 mm cyst (bright on
    T2W, dark on T1, not enhancing); T2W on its own thinner-in-plane, shorter grid."""
    rng = np.random.default_rng(seed)
    dce = _affine(SPACING, SHAPE)
    focus = _ball(SHAPE, dce, FOCUS_MM, 2.0)
    cyst = _ball(SHAPE, dce, CYST_MM, 6.0)
    pre = np.where(cyst, 0.2, np.where(focus, 0.3, 0.85)).astype(np.float32)
    series = {"DCE_0": pre}
    for k, gain in enumerate((1.0, 0.95, 0.9), start=1):
        series[f"DCE_{k}"] = np.where(focus, pre + gain * 0.9, pre)
    noisy = {
        n: Volume((v + rng.normal(0, 0.02, v.shape)).astype(np.float32), dce)
        for n, v in series.items()
    }
    t2_spacing, t2_shape = (0.7, 0.7, 3.0), (116, 116, 20)  # 60 mm of the 72 mm
    t2_affine = _affine(t2_spacing, t2_shape)
    t2 = np.where(_ball(t2_shape, t2_affine, CYST_MM, 6.0), 1.0, 0.8).astype(np.float32)
    t2 += rng.normal(0, 0.02, t2.shape).astype(np.float32)
    noisy["T2W"] = Volume(t2, t2_affine)
    return Study("phantom", noisy, source="test", form="folder")


def _everywhere(points: np.ndarray) -> np.ndarray:
    return np.ones(len(points), bool)


def test_blob_peaks_find_a_blob_at_its_own_scale():
    affine = _affine(SPACING, SHAPE)
    image = _ball(SHAPE, affine, CYST_MM, 6.0).astype(np.float32)
    image += np.random.default_rng(1).normal(0, 0.05, SHAPE).astype(np.float32)
    world, strength, scale = blob_peaks(image, affine, np.ones(SHAPE, bool))
    assert np.linalg.norm(world[0] - CYST_MM) < 2.0
    assert scale[0] >= 3.2  # a 12 mm ball, not the finest (noise) scale
    assert strength[0] > 3 * strength[1]  # and far above the noise around it


def test_proposals_find_a_focus_by_enhancement_and_a_cyst_by_fluid():
    study = _breast_study()
    found = propose(study, _everywhere, {"enhancement": 3, "fluid": 3})
    enhancing = [p for p in found if p.contrast == "enhancement"]
    fluid = [p for p in found if p.contrast == "fluid"]
    assert np.linalg.norm(np.asarray(enhancing[0].centre_mm) - FOCUS_MM) < 2.0
    assert np.linalg.norm(np.asarray(fluid[0].centre_mm) - CYST_MM) < 2.0
    # T2W covers 60 of the DCE's 72 mm: its edge is no blob (it would be a bright sheet)
    for p in fluid:
        assert abs(p.centre_mm[2]) < 30.0 - 3.0
    # without contrast the fluid map still finds the cyst (T2W against fat alone)
    t2_only = Study("t2", {"T2W": study.sequences["T2W"]}, source="test", form="folder")
    alone = propose(t2_only, _everywhere, {"enhancement": 3, "fluid": 1})
    assert [p.contrast for p in alone] == ["fluid"]
    assert np.linalg.norm(np.asarray(alone[0].centre_mm) - CYST_MM) < 2.0


def test_the_gate_accepts_the_lesions_of_another_study_and_nothing_else(tmp_path):
    """A gate fit on one phantom's crops (at its two lesions and at its other proposals) reads a
    second phantom (other noise): the proposals it accepts are its focus and its cyst,
    each once, re-centred on the lesion."""
    from reportgen.measure.crop_measures import MEASURES
    from reportgen.model.crop_reader import CropReader, CropReaderConfig
    from reportgen.model.gate_training import fit_gate
    from reportgen.model.native_candidates import find_native
    from reportgen.preprocessing import lesion_crop
    from reportgen.report import load_template

    cfg = CropReaderConfig.for_template(load_template("birads_mri"))
    plain = CropReader(cfg)
    train = _breast_study(seed=0)
    rng = np.random.default_rng(2)
    elsewhere = [  # what the gate must learn to refuse: the proposals that are no lesion
        np.asarray(p.centre_mm)
        for p in propose(train, _everywhere, {"enhancement": 8, "fluid": 8})
        if min(np.linalg.norm(p.centre_mm - FOCUS_MM), np.linalg.norm(p.centre_mm - CYST_MM)) > 8
    ][:10]
    near = [c + rng.uniform(-1, 1, 3) for c in (FOCUS_MM, CYST_MM) for _ in range(5)]
    centres = [*near, *elsewhere]
    labels = np.array([1] * len(near) + [0] * len(elsewhere))
    cut = [lesion_crop(train, c) for c in centres]
    measures = plain.measure(np.stack([c for c, _ in cut]), np.stack([p for _, p in cut]))
    # twenty crops: the gate may only look at what tells these lesions from noise at all
    # (how much the crop's centre enhances, how bright on T2W it is over fat), or it would
    # split on whatever else separates twenty rows; the trees split no leaf under 20 rows,
    # so each row counts eight times
    keep = [MEASURES.index(k) for k in ("enhancement_1", "t2_over_fat")]
    only = np.zeros_like(measures.numpy())
    only[:, keep] = measures.numpy()[:, keep]
    measures, labels = np.tile(only, (8, 1)), np.tile(labels, 8)
    gate = fit_gate(measures, labels, iterations=100)
    cfg.gate_shape = gate.shape
    reader = CropReader(cfg)
    reader.gate.load_state_dict(gate.state_dict())
    found = find_native(reader, _breast_study(seed=1), _everywhere, {"enhancement": 4, "fluid": 4})
    assert len(found) == 2, [(f.centre_mm, f.probability) for f in found]
    where = sorted(found, key=lambda f: f.centre_mm[0])
    assert np.linalg.norm(where[0].centre_mm - FOCUS_MM) < 1.5
    assert np.linalg.norm(where[1].centre_mm - CYST_MM) < 1.5
    # saved, the gate and how it was fit are on the reader's card
    from reportgen.model.crop_reader import load_crop_reader, save_crop_reader
    from reportgen.model.gate_training import with_gate

    made = {"studies": 1, "seed": 0, "threshold": 0.6}
    summary = {"gate": {"args": made, "rows": len(labels), "lesion_rows": int(labels.sum())}}
    save_crop_reader(with_gate(reader, gate, 0.6), tmp_path / "reader", summary)
    card = (tmp_path / "reader" / "README.md").read_text()
    assert f"fit on {len(labels)} proposals" in card
    assert "`reportgen train-gate --reader DIR --studies 1 --seed 0 --threshold 0.6`" in card
    assert load_crop_reader(tmp_path / "reader").cfg.gate_threshold == 0.6


def test_one_per_lesion_keeps_the_most_probable_description_of_each_lesion():
    from types import SimpleNamespace

    from reportgen.model.native_candidates import one_per_lesion

    def outlined(centre, radius):
        grid = np.indices((40, 40, 40)).reshape(3, -1).T
        voxels = grid[np.linalg.norm(grid - np.asarray(centre), axis=1) <= radius]
        return SimpleNamespace(
            reading=SimpleNamespace(centre_voxel=voxels.mean(0)), outline=voxels, name=centre
        )

    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 2 mm voxels
    large = outlined((20, 20, 20), 8)  # 32 mm across
    chosen = [
        (large, True),
        (outlined((20, 21, 20), 2), True),  # centre 2 mm from the large one's
        (outlined((26, 20, 20), 4), False),  # at its edge: 12 mm away, inside its outline
        (outlined((5, 5, 5), 2), False),  # another lesion, outlined by its crop only
        (outlined((5, 5, 13), 2), False),  # 16 mm away, not touching: a lesion of its own
        (outlined((5, 6, 5), 3), True),  # the model's outline of (5, 5, 5): its description
    ]
    kept = one_per_lesion(chosen, affine)
    assert [c.name for c in kept] == [(20, 20, 20), (5, 6, 5), (5, 5, 13)]


def test_touching_outlines_of_one_lesion_become_their_union():
    """A large lesion proposed as pieces, each outlined by its own crop: one lesion,
    outlined by all of them, measured again."""
    from types import SimpleNamespace

    from reportgen.model.native_candidates import one_per_lesion

    def piece(low, high, name):
        grid = np.indices((60, 20, 20)).reshape(3, -1).T
        voxels = grid[((grid >= low) & (grid < high)).all(1)]
        return SimpleNamespace(
            reading=SimpleNamespace(centre_voxel=voxels.mean(0)), outline=voxels, name=name
        )

    def remeasure(c, voxels):
        return SimpleNamespace(
            reading=SimpleNamespace(centre_voxel=voxels.mean(0)), outline=voxels, name=c.name
        )

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    pieces = [  # a 96 mm long band in three 32 mm pieces, and a lesion 2 voxels away
        (piece((16, 5, 5), (32, 10, 10), "middle"), False),
        (piece((0, 5, 5), (16, 10, 10), "front"), False),
        (piece((32, 5, 5), (48, 10, 10), "back"), False),
        (piece((50, 5, 5), (55, 10, 10), "other"), False),
    ]
    kept = one_per_lesion(pieces, affine, remeasure)
    assert [c.name for c in kept] == ["middle", "other"]
    band = kept[0].outline
    assert (band.min(0) == (0, 5, 5)).all() and (band.max(0) == (47, 9, 9)).all()
    assert len(band) == 48 * 5 * 5


def test_the_crop_reader_reads_a_lesion_where_it_was_found_and_at_the_model_outline():
    """A model outline claimed by a native proposal is read at the proposal's centre (its
    crop outline's) and at the outline's centre on the 2 mm grid, once where the two are
    one place; an outline no proposal claimed is read at its own centre."""
    from reportgen.model.evidence import CandidateReading
    from reportgen.model.generate import _read_places

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-10.0, -20.0, -30.0)
    reading = CandidateReading(np.zeros(1), {}, np.array([5.0, 5.0, 5.0]))
    (only,) = _read_places(reading, affine)
    assert np.allclose(only, (0.0, -10.0, -20.0))
    reading.found_at_mm = np.array([1.5, -9.0, -21.0])
    found, centre = _read_places(reading, affine)
    assert np.allclose(found, (1.5, -9.0, -21.0)) and np.allclose(centre, (0.0, -10.0, -20.0))
    reading.found_at_mm = np.array([0.5, -10.0, -20.0])
    (only,) = _read_places(reading, affine)
    assert np.allclose(only, (0.5, -10.0, -20.0))


def test_lesion_body_drops_thin_rays_and_keeps_a_focus():
    """Three dimensions are measured on the lesion's body: a 20 mm ball with two thin
    strands running out of it measures as the ball, and a focus thinner than the opening
    is kept whole."""
    from reportgen.measure.geometry import lesion_body

    shape = (48, 48, 48)
    affine = _affine((0.9, 0.9, 0.9), shape)
    ball = _ball(shape, affine, np.zeros(3), 10.0)
    strands = ball.copy()
    strands[24, 24, 24:47] = True  # a one-voxel ray to the crop's edge
    strands[5:24, 24, 24] = True
    body = lesion_body(strands)
    extent = (np.ptp(np.argwhere(body), 0) + 1) * 0.9
    assert np.allclose(extent, 20.0, atol=1.0), extent
    focus = _ball(shape, affine, np.zeros(3), 2.0)
    assert (lesion_body(focus) == focus).all()


def test_a_lesion_read_at_its_own_resolution_is_boxed_and_placed_there(tmp_path):
    """A clinical-resolution phantom drafted with the bundled model: the finding's box is
    its outline at the acquisition's own resolution (IoU with the true lesion's box over
    0.6, each of its three dimensions within 2 mm), and the finding states its distance
    from the nipple, in the narrative too. Its sequence contributions are what the crop
    reader's reading rests on: hiding the dynamic series costs an enhancing mass's read
    values more than hiding T2W does."""
    import json

    import nibabel as nib

    from reportgen.io import load_study
    from reportgen.model.generate import BUNDLED_MODEL, GenerateOptions
    from reportgen.model.generators import open_generator
    from reportgen.render.text import render_text
    from reportgen.synth import SynthOptions, synth_dataset

    synth_dataset(
        tmp_path, 1, SynthOptions(domain="breast", seed=5, protocol="clinical"), workers=1
    )
    folder = tmp_path / "breast-s5-00000"
    report = open_generator(BUNDLED_MODEL).draft(load_study(folder), GenerateOptions()).report
    truth = json.loads((folder / "report.json").read_text())
    mask = nib.load(folder / "lesion_mask.nii.gz")
    spacing = np.sqrt((mask.affine[:3, :3] ** 2).sum(0))
    voxels = np.argwhere(np.asarray(mask.dataobj) == 1)
    world = voxels @ mask.affine[:3, :3].T + mask.affine[:3, 3]
    low, high = world.min(0) - spacing / 2, world.max(0) + spacing / 2
    assert len(truth["findings"]) == 1 and len(report.findings) == 1
    box = report.findings[0].evidence.box
    inner = np.clip(np.minimum(high, box.max_mm) - np.maximum(low, box.min_mm), 0, None)
    union = np.prod(high - low) + np.prod(np.subtract(box.max_mm, box.min_mm)) - np.prod(inner)
    assert np.prod(inner) / union > 0.6
    assert np.allclose(box.dimensions_mm(), high - low, atol=2.0)
    distance = report.findings[0].evidence.nipple_distance_mm
    assert distance is not None and 10 < distance < 150
    assert f"{int(distance + 0.5)} mm from the nipple" in render_text(report, "en")
    contributions = report.findings[0].evidence.sequence_contributions
    assert set(contributions) == {"T2W", "DWI/ADC", "DCE"}
    assert truth["findings"][0]["fields"]["type"]["value"] == "mass"
    assert contributions["DCE"] > max(contributions["T2W"], 0.05)
