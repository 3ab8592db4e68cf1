"""Measured evidence: tissue measures, lesion signal, and what the decoder is shown."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reportgen.data import read_manifest, study_arrays
from reportgen.io import load_study
from reportgen.measure.breast import find_landmarks
from reportgen.measure.signal import lesion_signal
from reportgen.measure.tissue import breast_regions, breast_tissue, fgt_share
from reportgen.model.evidence import (
    CANDIDATE_LAYOUT,
    TISSUE_LAYOUT,
    needs_matrix,
    read_candidate,
    read_study,
    visible,
)
from reportgen.report.io import read_report
from reportgen.synth import SynthOptions, synth_dataset

SEQUENCES = ("T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3")
GRID = SimpleNamespace(grid_shape=(96, 96, 48), grid_spacing=(3.0, 3.0, 3.0), sequences=SEQUENCES)


def _two_tissue_breast(fgt_fraction: float, seed: int = 0):
    """A body with a dark chest-wall slab behind a breast-shaped protrusion whose voxels
    are fibroglandular (darker on T2W, enhancing) in a known share, fat elsewhere."""
    rng = np.random.default_rng(seed)
    shape = (64, 64, 32)  # 2 mm voxels, RAS axes
    t2 = np.zeros(shape, np.float32)
    t2[8:56, 4:30, 4:28] = 0.8  # torso fat
    t2[8:56, 14:20, 4:28] = 0.2  # chest wall (muscle), y 28-40 mm
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    breast = ((x - 44) ** 2 + (z - 16) ** 2 < 100) & (y >= 30) & (y < 52)  # patient right
    t2[breast] = 0.8
    fgt = breast & (rng.random(shape) < fgt_fraction)
    t2[fgt] = 0.42
    t2 += rng.normal(0, 0.02, shape).astype(np.float32) * (t2 > 0)
    pre = np.where(t2 > 0, 0.5, 0).astype(np.float32)
    post = pre * np.where(fgt, 1.3, 1.0).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return t2, [pre, post, post, post], affine, breast, fgt


def test_fgt_share_unmixes_partial_volume_linearly():
    values = np.concatenate([np.full(100, 0.4), np.full(850, 0.8), np.full(50, 0.6)])
    share, dark, bright = fgt_share(values)
    assert (dark, bright) == pytest.approx((0.4, 0.8))
    assert share[:100] == pytest.approx(1.0) and share[-50:] == pytest.approx(0.5)
    assert share.mean() == pytest.approx(0.125)


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_fgt_amount_and_bpe_are_measured_on_a_known_breast(fraction):
    t2, dce, affine, breast, fgt = _two_tissue_breast(fraction)
    marks = find_landmarks(t2, affine)
    thinner = breast_tissue(*_two_tissue_breast(fraction / 2)[:3:2], marks)
    denser = breast_tissue(t2, affine, marks)
    assert thinner.fgt_fraction["right"] < denser.fgt_fraction["right"]
    assert marks.chest_wall_y_mm["right"] == pytest.approx(40.0, abs=4.0)
    tissue = breast_tissue(t2, affine, marks, dce)
    region = breast_regions(t2, affine, marks)["right"]
    assert (region & breast).sum() > 0.4 * breast.sum()  # the breast less its 4 mm rim
    assert float(t2[region].min()) > 0.3  # the chest wall's muscle is left out
    # The region also holds the fat between breast and chest wall: the measured share is
    # the FGT share of the region, which orders breasts as their own shares do.
    assert tissue.fgt_fraction["right"] == pytest.approx(
        (region & fgt).sum() / region.sum(), abs=0.08
    )
    assert tissue.bpe_early["right"] == pytest.approx(0.3, abs=0.05)
    assert breast_tissue(t2, affine, marks, None).bpe_late["right"] is None


def test_the_time_intensity_curve_reads_wash_out_and_persistence():
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    pre = np.full(mask.shape, 0.5, np.float32)
    washout = {f"DCE_{k}": pre * (1 + e) for k, e in enumerate([0.0, 1.2, 1.0, 0.8])}
    persistent = {f"DCE_{k}": pre * (1 + e) for k, e in enumerate([0.0, 0.5, 0.6, 0.7])}
    out = lesion_signal(mask, washout, None, None)
    assert out.enhancement[0] == pytest.approx(1.2, abs=1e-3)
    assert out.delayed_change < -0.1
    assert lesion_signal(mask, persistent, None, None).delayed_change > 0.1
    no_dce = lesion_signal(mask, {"T2W": pre}, mask, None)
    assert no_dce.enhancement is None and no_dce.t2_over_fgt == pytest.approx(1.0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evidence")
    synth_dataset(
        folder,
        4,
        SynthOptions(protocol="low_resolution", domain="breast", seed=78, malignant_fraction=1.0),
        1,
    )
    out = []
    for row in read_manifest(folder):
        arrays = study_arrays(load_study(folder / row["dir"]), GRID)
        out.append((arrays, read_report(folder / row["dir"] / "report.json")))
    return out


def test_side_clock_depth_and_size_pointers_come_from_the_outline(prepared):
    seen = 0
    grid = [str(n) for n in range(2, 151)]
    for arrays, truth in prepared:
        study = read_study(arrays["image"], arrays["present"], SEQUENCES, GRID.grid_spacing)
        for number, finding in enumerate(truth.findings, start=1):
            mask = arrays["mask"] == number
            if mask.sum() < 8:
                continue
            reading = read_candidate(mask, 0.9, study, grid)
            assert reading.pointers["laterality"] == finding.fields["laterality"].value
            assert reading.pointers["clock"] == finding.fields["clock"].value
            assert reading.pointers["depth"] == finding.fields["depth"].value
            assert abs(int(reading.pointers["size_mm"]) - finding.fields["size_mm"].value) <= 6
            seen += 1
    assert seen >= 2


def test_a_study_without_dce_has_no_kinetics_evidence(prepared):
    arrays, _ = prepared[0]
    present = arrays["present"].copy()
    present[3:] = False
    study = read_study(arrays["image"], present, SEQUENCES, GRID.grid_spacing)
    names = [name for name, _ in TISSUE_LAYOUT]
    assert study.features[names.index("has_dce")] == 0
    assert study.features[names.index("has_t2")] == 1
    mask = arrays["mask"] == 1
    reading = read_candidate(mask, 0.9, study, None)
    names = [name for name, _ in CANDIDATE_LAYOUT]
    dce = [i for i, (_, needs) in enumerate(CANDIDATE_LAYOUT) if "DCE_0" in needs]
    assert not reading.features[dce].any()
    assert reading.features[names.index("has_t2")] == 1


def test_dropped_sequences_hide_the_features_measured_from_them():
    needs = needs_matrix(CANDIDATE_LAYOUT, SEQUENCES)
    kept = np.ones((2, len(SEQUENCES)), bool)
    kept[1, SEQUENCES.index("DCE_2")] = False
    seen = visible(needs, kept)
    names = [name for name, _ in CANDIDATE_LAYOUT]
    assert seen[0].all()
    assert not seen[1, names.index("delayed_change")]
    assert seen[1, names.index("t2_over_fgt")] and seen[1, names.index("diameter_cm")]
