"""Every image we write is in radiological convention with R and L marked: the patient's
right on the viewer's left, whatever order the volume's voxels are stored in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reportgen.render.key_images import canonical, radiological

SHAPE = (40, 30, 8)


def _affine(flip_x: bool) -> np.ndarray:
    """2 mm voxels centred on 0; with `flip_x` the first axis runs towards the patient's
    left (as LPS-stored DICOM does), else towards the right (RAS)."""
    affine = np.diag([-2.0 if flip_x else 2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(SHAPE) - 1) / 2)
    return affine


def _right_anterior_blob(affine: np.ndarray) -> np.ndarray:
    """A bright block at the patient's right (x > 0) and anterior (y > 0)."""
    world = np.indices(SHAPE).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    inside = (world[:, 0] > 15) & (world[:, 0] < 30) & (world[:, 1] > 10) & (world[:, 1] < 25)
    return inside.reshape(SHAPE).astype(np.float32)


@pytest.mark.parametrize("flip_x", [False, True])
def test_the_patients_right_is_on_the_viewers_left_and_anterior_on_top(flip_x):
    affine = _affine(flip_x)
    data, _ = canonical(_right_anterior_blob(affine), affine)
    shown = radiological(data[:, :, 4])
    rows, cols = np.nonzero(shown)
    assert cols.max() < shown.shape[1] / 2  # the viewer's left half
    assert rows.max() < shown.shape[0] / 2  # the top half


@pytest.mark.parametrize("flip_x", [False, True])
def test_the_heat_map_png_is_radiological_with_side_markers(tmp_path, flip_x):
    from reportgen.model.explain import _save

    affine = _affine(flip_x)
    heat = _right_anterior_blob(affine)
    image = torch.from_numpy(np.stack([np.full(SHAPE, 0.5, np.float32) + 0.01 * heat]))
    _, png = _save(heat, affine, image, torch.tensor([True]), ["T2W"], tmp_path / "ev", "F1")
    rgb = np.asarray(Image.open(tmp_path / png).convert("RGB")).astype(int)
    red = (rgb[..., 0] - rgb[..., 2]) > 60  # the hot overlay
    rows, cols = np.nonzero(red)
    assert len(cols) and cols.max() < rgb.shape[1] / 2 and rows.max() < rgb.shape[0] / 2
    # "R" drawn at the top left, "L" at the top right: white text pixels in both corners
    white = (rgb > 240).all(-1)
    assert white[:16, :16].any() and white[:16, -16:].any()


def test_a_ct_is_shown_in_its_phase_window_in_hounsfield_units():
    """HU mean the same grey on every CT image: the abdominal window (W 400, L 40) puts
    water-like 40 HU at mid-grey whatever else the slice holds; the pancreatic phase is
    shown in the narrower pancreas window."""
    from reportgen.render.key_images import CT_PRESETS, CT_WINDOWS, window
    from reportgen.review.viewer import DisplayVolume
    from reportgen.review.volumes import available

    plane = np.array([[-1000.0, -160.0], [40.0, 240.0]])
    assert window(plane, "abdomen").tolist() == [[0.0, 0.0], [0.5, 1.0]]
    bright = np.array([[-1000.0, 40.0], [1000.0, 3000.0]])  # bone sets no level
    assert window(bright, "abdomen")[0, 1] == 0.5
    assert CT_PRESETS["CT_PANC"] == "pancreas" and CT_WINDOWS["pancreas"][1] < 400
    volume = np.zeros((4, 4, 3), np.float32)
    shown = {
        "CT_PANC": DisplayVolume.of(volume, np.eye(4), CT_PRESETS["CT_PANC"]),
        "T2W": DisplayVolume.of(volume + np.arange(3), np.eye(4)),
    }
    listed = {v.name: v for v in available(shown, heat=False, boxes=False)}
    level, width = CT_WINDOWS["pancreas"]
    assert listed["CT_PANC"].window == (level - width / 2, level + width / 2)
    assert "pancreas window" in listed["CT_PANC"].label
    assert listed["T2W"].window is None  # an MRI keeps the viewer's own range
