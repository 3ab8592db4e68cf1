"""Lesion views: the clinical breast scene around one lesion, imaged as the whole study
is, and the crop a lesion is read from at the acquisition's own resolution."""

from __future__ import annotations

import numpy as np

from reportgen.io.sequences import PROTOCOL
from reportgen.preprocessing import LESION_CROP, lesion_crop
from reportgen.synth import SynthOptions
from reportgen.synth.acquisition import sample_acquisition
from reportgen.synth.views import VIEW_EXTENT_MM, lesion_views, view_rng


def test_a_view_is_the_clinical_acquisition_narrowed_to_a_cube_around_its_lesion():
    options = SynthOptions(domain="breast", seed=3, protocol="clinical")
    views = [v for i in range(6) for v in lesion_views(options, i)]
    assert views, "six cases drew no lesion"
    for view in views:
        dce = view.series["DCE_1"][1]
        spacing = np.sqrt((dce[:3, :3] ** 2).sum(0))
        assert np.all(spacing[:2] <= 1.0) and spacing[2] <= 3.0  # the DCE at clinical resolution
        diffusion = np.sqrt((view.series["ADC"][1][:3, :3] ** 2).sum(0))
        assert diffusion[0] > 1.5 and diffusion[2] >= 4.0  # DWI/ADC coarser, as acquired
        extent = np.asarray(view.labels.shape) * spacing
        assert np.all(np.abs(extent - VIEW_EXTENT_MM) < spacing + 1e-6)
        centre = view.grid.affine[:3, :3] @ ((np.asarray(view.labels.shape) - 1) / 2)
        centre += view.grid.affine[:3, 3]
        assert np.linalg.norm(view.centroid_mm() - centre) < 0.3 * VIEW_EXTENT_MM
        assert "size_mm" in view.fields and view.fields["type"]
    # the same draws: views are deterministic by (seed, index)
    once, twice = lesion_views(options, 1), lesion_views(options, 1)
    assert len(once) == len(twice)
    for a, b in zip(once, twice, strict=True):
        assert np.array_equal(a.series["DCE_1"][0], b.series["DCE_1"][0])


def test_a_views_bias_field_keeps_the_whole_field_of_views_scale():
    """Narrowed to a cube, the receive-coil field must vary as slowly (in voxels) as over
    the whole acquisition, or the view would show a lesion under another coil."""
    options = SynthOptions(domain="breast", seed=3, protocol="clinical")
    acq = sample_acquisition(view_rng(options, 0), "breast", None, False, "clinical")
    narrowed = acq.around(np.zeros(3), VIEW_EXTENT_MM)
    assert narrowed.bias_scale == max(acq.matrix) / 2.0
    assert narrowed.spacing == acq.spacing and narrowed.series_spacing == acq.series_spacing


def test_lesion_crop_reads_every_series_at_the_crops_own_resolution():
    options = SynthOptions(domain="breast", seed=4, protocol="clinical")
    view = next(v for i in range(10) for v in lesion_views(options, i))
    image, present = lesion_crop(view.study(), view.centroid_mm())
    assert image.shape == (len(PROTOCOL), *LESION_CROP.shape) and present.all()
    assert np.isfinite(image).all()
    # DCE phases share the pre-contrast scale: the kinetic curve survives, so an enhancing
    # lesion is brighter after contrast at the crop's centre than before
    centre = tuple(s // 2 for s in LESION_CROP.shape)
    dce = [image[PROTOCOL.index(f"DCE_{k}")][centre] for k in range(4)]
    if view.fields["type"] != "breast_cyst":
        assert max(dce[1:]) > dce[0]


def test_a_crop_cut_from_its_footprint_is_the_crop_cut_from_the_whole_series():
    """`lesion_crop` resamples each series from the part around the crop only (15x
    faster); the voxels must be those resampled from the whole series, at the lesion and
    at the series' edge and beyond (zeros)."""
    import torch
    import torchio as tio

    from reportgen.preprocessing import preprocessing_transform, target_affine

    options = SynthOptions(domain="breast", seed=4, protocol="clinical")
    view = next(v for i in range(10) for v in lesion_views(options, i))
    study = view.study()
    dce = study.sequences["DCE_0"]
    corner = dce.affine[:3, :3] @ np.asarray(dce.data.shape) + dce.affine[:3, 3]
    for centre in (view.centroid_mm(), corner, corner + 500.0):
        image, _ = lesion_crop(study, centre)
        whole = tio.Subject(
            {
                n: tio.ScalarImage(tensor=torch.from_numpy(v.data)[None], affine=v.affine)
                for n, v in study.sequences.items()
            }
        )
        ready = preprocessing_transform(LESION_CROP, target_affine(LESION_CROP, centre))(whole)
        for n in study.sequences:
            expected = torch.nan_to_num(ready[n].data[0].float()).numpy()
            assert np.array_equal(image[PROTOCOL.index(n)], expected), n


def test_clinical_margins_are_drawn_at_a_scale_the_acquisition_resolves():
    """An irregular margin's surface is rougher, and a spiculated mass reaches farther
    beyond its body, than a circumscribed mass's, measured on the drawn lesion's own
    mask at the view's resolution (`reportgen.measure.radial`)."""
    from reportgen.measure.radial import radial_form, radial_outline

    options = SynthOptions(domain="breast", seed=8, protocol="clinical")
    jagged: dict[str, list[float]] = {}
    for i in range(80):
        for view in lesion_views(options, i):
            margin = view.fields.get("margin")
            if margin is None or view.fields["size_mm"] < 10:
                continue
            voxels = np.argwhere(view.labels == view.label)
            outline = radial_outline((view.labels == view.label).astype(float), voxels.mean(0))
            jagged.setdefault(margin, []).append(radial_form(outline).jagged)
    assert all(len(v) >= 4 for v in jagged.values()) and len(jagged) >= 2, jagged
    assert np.median(jagged["margin_irregular"]) > 1.5 * np.median(jagged["margin_circumscribed"])


def test_views_of_chosen_types_render_only_those_lesions():
    """The crop reader's extra non-mass enhancement rows come from views asked for that
    type alone: every view returned is of it, and a case without one renders nothing."""
    from reportgen.synth import breast

    options = SynthOptions(domain="breast", seed=3, protocol="clinical")
    wanted = frozenset({"non_mass_enhancement"})
    kinds = {}
    for i in range(40):
        case = breast.sample_case(view_rng(options, i), options.malignant_fraction)
        kinds[i] = {lesion.fields["type"] for lesion in case.lesions}
    with_nme = [i for i, k in kinds.items() if wanted & k]
    without = [i for i, k in kinds.items() if k and not wanted & k]
    assert with_nme and without, "40 cases should draw both kinds"
    views = lesion_views(options, with_nme[0], types=wanted)
    assert views and all(v.fields["type"] == "non_mass_enhancement" for v in views)
    assert lesion_views(options, without[0], types=wanted) == []
