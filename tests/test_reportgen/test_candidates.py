"""Lesion-centred reading: candidates from a probability map, crops, finding order, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain_mae.config import preset
from reportgen.data import read_manifest
from reportgen.model.candidates import (
    crop_around,
    find_candidates,
    geometry_features,
    match_to_labels,
)
from reportgen.model.config import PRESETS, ReportModelConfig
from reportgen.model.detector import LesionDetector, lesion_probability
from reportgen.model.detector_training import fit_detector
from reportgen.model.losses import segmentation_loss
from reportgen.model.modeling import ReportModel
from reportgen.model.roi_training import findings_in_candidate_order
from reportgen.synth import SynthOptions, synth_dataset


def _blob(shape, centre, radius):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return (np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius).astype(np.float32)


def test_candidates_are_connected_regions_strongest_first():
    shape = (32, 32, 16)
    prob = 0.9 * _blob(shape, (8, 8, 8), 2) + 0.8 * _blob(shape, (24, 20, 8), 4)
    prob += 0.3 * _blob(shape, (24, 6, 4), 1)  # below threshold: not a candidate
    found, components = find_candidates(prob, (4.0, 4.0, 4.0), threshold=0.5, max_candidates=3)
    assert len(found) == 2
    assert np.allclose(found[0].centre, (24, 20, 8), atol=0.01)  # larger mass first
    assert np.allclose(found[1].centre, (8, 8, 8), atol=0.01)
    assert (found[0].high - found[0].low + 1).tolist() == [9, 9, 9]
    assert found[0].volume_mm3 == _blob(shape, (24, 20, 8), 4).sum() * 64
    assert find_candidates(prob, (4.0,) * 3, 0.5, 1)[0][0].component == found[0].component
    # which lesion (finding number) each candidate covers, for ordering the training report
    mask = np.zeros(shape, np.int16)
    mask[_blob(shape, (8, 8, 8), 2) > 0] = 1
    assert match_to_labels(found, components, mask) == [0, 1]
    geometry = geometry_features(found[0], shape, (4.0,) * 3)
    assert geometry.shape == (8,) and geometry[0] > 0 and geometry[3] == 9 * 4 / 50


def test_crop_is_centred_and_zero_outside_the_volume():
    image = torch.arange(2 * 10 * 10 * 10, dtype=torch.float32).reshape(2, 10, 10, 10)
    inside = crop_around(image, np.array([5.0, 5.0, 5.0]), (4, 4, 4))
    assert torch.equal(inside, image[:, 3:7, 3:7, 3:7])
    edge = crop_around(image, np.array([0.0, 9.0, 5.0]), (4, 4, 4))
    assert edge.shape == (2, 4, 4, 4)
    assert torch.equal(edge[:, 2:, :3, :], image[:, :2, 7:, 3:7])
    assert float(edge[:, :2].abs().sum()) == 0 and float(edge[:, :, 3:].abs().sum()) == 0


def test_detector_learns_to_mark_a_bright_blob():
    torch.manual_seed(0)
    shape = (16, 16, 8)
    net = LesionDetector(2, width=4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)

    def sample():
        target = np.stack([_blob(shape, rng.integers(3, 13, 3) * [1, 1, 0.5], 2) for _ in range(4)])
        image = np.stack([target * 2 + rng.normal(0, 0.3, target.shape), target * 0], 1)
        return torch.tensor(image, dtype=torch.float32), torch.tensor(target)

    present = torch.ones(4, 2, dtype=torch.bool)
    first = None
    for _ in range(60):
        image, target = sample()
        loss = segmentation_loss(net(image, present), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    image, target = sample()
    with torch.no_grad():
        pred = torch.sigmoid(net(image, present)) > 0.5
    dice = 2 * (pred & (target > 0)).sum() / (pred.sum() + (target > 0).sum())
    assert loss.item() < first and float(dice) > 0.6


def test_the_detector_trainer_finds_a_planted_lesion():
    """The one trainer (augmented, sequences dropped at random) on tiny studies with one
    bright lesion each; then a lesion planted where none was trained is found."""
    rng = np.random.default_rng(1)
    shape = (16, 16, 8)
    targets = np.stack([_blob(shape, rng.integers(4, 12, 3) * [1, 1, 0.5], 2) for _ in range(24)])
    noise = rng.normal(0, 0.2, (24, 2, *shape))
    images = np.stack([targets * 2, targets * 1.5], 1) + noise
    torch.manual_seed(0)
    net = LesionDetector(2, width=4)
    loss = fit_detector(
        net,
        torch.tensor(images, dtype=torch.float32),
        torch.ones(24, 2, dtype=torch.bool),
        torch.tensor(targets, dtype=torch.float32),
        [True] * 24,
        steps=120,
        batch_size=4,
        lr=1e-2,
        seed=0,
        progress=False,
    )
    planted = _blob(shape, (11, 4, 3), 2)
    image = np.stack([planted * 2, planted * 1.5]) + rng.normal(0, 0.2, (2, *shape))
    prob = lesion_probability(
        net, torch.tensor(image, dtype=torch.float32)[None], torch.ones(1, 2, dtype=torch.bool)
    )[0].numpy()
    found, _ = find_candidates(prob, (4.0, 4.0, 4.0), 0.5, 3)
    assert loss < 1.0 and found
    assert np.linalg.norm(found[0].centre - np.array([11, 4, 3])) < 2.0


def test_findings_follow_the_candidates(tmp_path):
    synth_dataset(
        tmp_path, 6, SynthOptions(protocol="low_resolution", domain="breast", seed=3), workers=1
    )
    from reportgen.report import Report

    one = next(
        Report.model_validate(r["report"])
        for r in read_manifest(tmp_path / "manifest.jsonl")
        if r["report"]["findings"]
    )
    first = one.findings[0]
    second = first.model_copy(update={"id": "F2"})
    report = one.model_copy(update={"findings": [first, second]})
    swapped = findings_in_candidate_order(report, [2, 0, 1])
    assert [f.id for f in swapped.findings] == ["F2", first.id]
    assert findings_in_candidate_order(report, [0, 1]) is report
    assert [f.id for f in report.findings] == [first.id, "F2"]  # the original is untouched


def test_memory_holds_a_geometry_token_and_zoomed_tokens_per_candidate():
    enc = preset("tiny")
    cfg = ReportModelConfig(
        template="birads_mri", encoder=enc.to_dict(), vocab_size=40, **PRESETS["tiny"]
    )
    model = ReportModel(cfg).eval()
    shape, spacing = cfg.input_grid()
    assert spacing == (4.0, 4.0, 4.0) and shape == (64, 64, 32)
    images = torch.zeros(2, len(enc.sequences), *shape)
    present = torch.ones(2, len(enc.sequences), dtype=torch.bool)
    present[1, 3:] = False
    # One candidate in the first study, none in the second.
    found, _ = find_candidates(
        _blob(enc.grid_shape, (10, 10, 8), 2), enc.grid_spacing, 0.5, cfg.roi["max_candidates"]
    )
    regions = model.regions_at(images, [found, []])
    with torch.no_grad():
        stem, stem_valid = model.roi_stem(regions.crops, present, regions.valid)
        memory, mask, _ = model.roi_memory(stem, stem_valid, regions.geometry, regions.valid)
    tokens = len(model.roi_seq_ids)
    assert stem.shape[0] == 1
    assert memory.shape == (2, cfg.roi["max_candidates"] * (1 + tokens), cfg.n_embd)
    assert int(mask[0].sum()) == 1 + tokens and int(mask[1].sum()) == 0
    with torch.no_grad():
        full, full_mask, _ = model.encode(images, present)
    assert full.shape[1] == enc.num_tokens + memory.shape[1] == full_mask.shape[1]


def test_small_lesions_weigh_more_per_voxel_than_large_ones():
    from reportgen.model.losses import DETECTOR_WEIGHTING, part_size_weights

    target = torch.zeros(1, 24, 24, 24)
    target[0, 2:4, 2:4, 2:4] = 1  # 8 voxels
    target[0, 10:20, 10:20, 10:20] = 1  # 1000 voxels
    w = part_size_weights(target.long(), 2, DETECTOR_WEIGHTING)[0]
    assert w[0, 0, 0] == 1.0 and w[15, 15, 15] == 1.0  # background; a large lesion: as before
    assert w[2, 2, 2] == pytest.approx(8.0**0.5) and w[2, 2, 2] <= DETECTOR_WEIGHTING.cap
