"""Cervix (FIGO 2018) and endometrium (FIGO 2023) phantoms: tumours that show their stage.

Every staging criterion is geometry: parametrial invasion breaks through the T2-dark
stromal ring into parametrial fat; vaginal involvement extends into the upper
two-thirds or the lower third of the vagina; side-wall involvement reaches the
obturator muscle; hydronephrosis dilates the ureters; mucosal invasion reaches into the
bladder or rectal lumen; myometrial invasion depth is a fraction of the myometrium;
cervical stromal invasion, serosal breach, adnexal and peritoneal deposits likewise.
Mask labels: 1 primary tumour, 2 tumour extension beyond it, 3 metastatic nodes, 4 a
dilated ureter (anatomy, not tumour: outlined so a reader can see hydronephrosis).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reportgen.synth.acquisition import Acquisition
from reportgen.synth.pelvis import AIR, Layout, paint_pelvis, vagina_third_z
from reportgen.synth.scene import Canvas, Harmonics, Tissue, blob, capsule, ellipsoid, rotation

PRIMARY, EXTENSION, NODES, DILATED_URETER = 1, 2, 3, 4
CERVIX_TUMOUR = Tissue(t2=0.55, s0=0.70, adc=820, t1=0.32, e1=1.0, e2=0.9, e3=0.8)
ENDOMETRIAL_TUMOUR = Tissue(t2=0.50, s0=0.70, adc=800, t1=0.31, e1=0.45, e2=0.6, e3=0.65)

ENDOMETRIUM_LAYOUT = Layout(uterus_centre=(0.0, 10.0, 28.0), uterus_axes=(42.0, 32.0, 34.0))


@dataclass
class GynaeCase:
    domain: str
    fields: dict
    tumour: dict  # finding fields (size_mm, myometrial_invasion ...)
    details: dict = field(default_factory=dict)
    size_mm: float = 0.0


def _p(rng: np.random.Generator, probability: float) -> bool:
    return bool(rng.random() < probability)


def sample_cervix(rng: np.random.Generator) -> GynaeCase:
    size_class = rng.choice(3, p=[0.35, 0.40, 0.25])
    size = float(rng.uniform(*[(9, 19), (21, 39), (42, 58)][size_class]))
    vagina = str(
        rng.choice(
            ["vagina_not_involved", "vagina_upper_two_thirds", "vagina_lower_third"],
            p=[0.67, 0.25, 0.08],
        )
    )
    pelvic = _p(rng, 0.30)
    fields = {
        "parametrial_invasion": _p(rng, 0.35),
        "vaginal_involvement": vagina,
        "pelvic_sidewall": _p(rng, 0.08),
        "hydronephrosis": _p(rng, 0.10),
        "bladder_mucosa": _p(rng, 0.06),
        "rectal_mucosa": _p(rng, 0.04),
        "pelvic_nodes": pelvic,
        "paraaortic_nodes": _p(rng, 0.35 if pelvic else 0.03),
    }
    if fields["pelvic_sidewall"]:
        fields["parametrial_invasion"] = (
            True  # the tumour crosses the parametrium to reach the wall
        )
    side = str(rng.choice(["right", "left"]))
    if fields["parametrial_invasion"]:  # the extension is painted towards this side
        fields["parametrial_side"] = side
    return GynaeCase("cervix", fields, {"size_mm": size}, details={"side": side})


def sample_endometrium(rng: np.random.Generator) -> GynaeCase:
    pelvic = _p(rng, 0.15)
    fields = {
        "cervical_stromal_invasion": _p(rng, 0.20),
        "serosal_involvement": _p(rng, 0.08),
        "adnexal_involvement": _p(rng, 0.08),
        "vaginal_or_parametrial_involvement": _p(rng, 0.06),
        "pelvic_peritoneal_involvement": _p(rng, 0.05),
        "bladder_mucosa": _p(rng, 0.03),
        "bowel_mucosa": _p(rng, 0.03),
        "pelvic_nodes": pelvic,
        "paraaortic_nodes": _p(rng, 0.35 if pelvic else 0.02),
    }
    deep = _p(rng, 0.45) or fields["serosal_involvement"]
    tumour = {
        "size_mm": float(rng.uniform(12, 55)),
        "myometrial_invasion": "myometrial_invasion_deep"
        if deep
        else "myometrial_invasion_superficial",
    }
    return GynaeCase(
        "endometrium", fields, tumour, details={"side": str(rng.choice(["right", "left"]))}
    )


def _side_x(side: str) -> float:
    return 1.0 if side == "right" else -1.0


def _paint_nodes_and_pelvis(
    canvas: Canvas, case: GynaeCase, layout: Layout, rng: np.random.Generator
) -> None:
    f = case.fields
    dilated = (False, False)
    if f.get("hydronephrosis"):
        both = _p(rng, 0.4)
        dilated = (True, both) if case.details["side"] == "right" else (both, True)
    case.details["metastatic_nodes"] = paint_pelvis(
        canvas,
        layout,
        rng,
        dilated_ureters=dilated,
        metastatic_pelvic_nodes=int(rng.integers(1, 3)) if f.get("pelvic_nodes") else 0,
        metastatic_paraaortic_nodes=int(rng.integers(1, 3)) if f.get("paraaortic_nodes") else 0,
        node_label=NODES,
        ureter_label=DILATED_URETER,
    )


PARAAORTIC_MIN_Z = 32.0  # para-aortic node sites lie above this (mm); pelvic ones below


def nodes_in_view(case: GynaeCase, canvas: Canvas) -> None:
    """Truth says only what the field of view shows: a metastatic node the slab misses
    (para-aortic nodes sit at its top edge) is not reported as present, and the side and
    largest short axis of the metastatic nodes are those of the ones it shows."""
    index = np.argwhere(canvas.labels == NODES)
    world = (
        index @ canvas.grid.affine[:3, :3].T + canvas.grid.affine[:3, 3] if len(index) else index
    )
    z = world[:, 2] if len(index) else index
    for key, seen in (
        ("pelvic_nodes", bool(np.any(z <= PARAAORTIC_MIN_Z))),
        ("paraaortic_nodes", bool(np.any(z > PARAAORTIC_MIN_Z))),
    ):
        if case.fields.get(key) and not seen:
            case.fields[key] = False
            case.details[f"{key}_outside_view"] = True
    shown = [
        (centre, short_axis)
        for centre, short_axis in case.details.pop("metastatic_nodes", [])
        if len(index) and np.min(np.linalg.norm(world - centre, axis=1)) < short_axis / 2
    ]
    if shown and (case.fields.get("pelvic_nodes") or case.fields.get("paraaortic_nodes")):
        sides = {"right" if centre[0] > 0 else "left" for centre, _ in shown}
        case.fields["node_side"] = sides.pop() if len(sides) == 1 else "bilateral"
        case.fields["node_short_axis_mm"] = round(max(axis for _, axis in shown))


def _extension(canvas: Canvas, start, end, radius: float, tissue: Tissue) -> None:
    sdf, bounds = capsule(np.asarray(start, np.float32), np.asarray(end, np.float32), radius)
    canvas.paint(sdf, bounds, tissue, label=EXTENSION, blur=1.2, keep_labels=True)


def render_cervix(case: GynaeCase, acq: Acquisition, rng: np.random.Generator) -> Canvas:
    layout = Layout()
    canvas = Canvas(acq.grid(), AIR)
    _paint_nodes_and_pelvis(canvas, case, layout, rng)
    f = case.fields
    size = case.tumour["size_mm"]
    half = size / 2.0
    lateral = min(half, layout.cervix_radius - 3.5)
    # The primary grows up from the external os, so a large tumour fills the lower uterine
    # segment rather than the vagina unless vaginal involvement is part of the truth.
    axes = (lateral, min(half, layout.cervix_radius + 6.0), half)
    os_z = layout.cervix_bottom[2]
    centre = np.array([0.0, 2.0, os_z + half - 2.0], np.float32)
    rot = rotation(rng, max_deg=8.0)
    sdf, bounds, longest = blob(centre, axes, rot, Harmonics(rng, 0.08, max_freq=3.0))
    canvas.paint(sdf, bounds, CERVIX_TUMOUR, label=PRIMARY, blur=1.2)
    case.size_mm = longest
    sx = _side_x(case.details["side"])
    z_mid = float(centre[2])
    if f["parametrial_invasion"]:
        reach = 88.0 if f["pelvic_sidewall"] else layout.cervix_radius + rng.uniform(10, 18)
        _extension(
            canvas,
            (sx * 6, 2, z_mid),
            (sx * reach, -2, z_mid - 4),
            rng.uniform(6.0, 8.5),
            CERVIX_TUMOUR,
        )
    if f["vaginal_involvement"] != "vagina_not_involved":
        third = vagina_third_z(layout)
        radius = 7.0
        # The capsule reaches `radius` beyond its end point: keep upper-vagina disease above the third.
        if f["vaginal_involvement"] == "vagina_upper_two_thirds":
            bottom = third + radius + rng.uniform(2, 6)
        else:
            bottom = third - rng.uniform(4, 8)
        _extension(canvas, (0, 0, os_z + 2), (0, -3, bottom), radius, CERVIX_TUMOUR)
    if f["bladder_mucosa"]:
        wall_y = layout.bladder_centre[1] - 23.0
        _extension(
            canvas, (0, 4, z_mid), (0, wall_y + 7, layout.bladder_centre[2] + 2), 8.0, CERVIX_TUMOUR
        )
    if f["rectal_mucosa"]:
        _extension(
            canvas, (0, -2, z_mid - 3), (0, layout.rectum_y + 7, z_mid - 6), 8.0, CERVIX_TUMOUR
        )
    return canvas


def render_endometrium(case: GynaeCase, acq: Acquisition, rng: np.random.Generator) -> Canvas:
    layout = ENDOMETRIUM_LAYOUT
    canvas = Canvas(acq.grid(), AIR)
    _paint_nodes_and_pelvis(canvas, case, layout, rng)
    f = case.fields
    ux, uy, uz = layout.uterus_axes
    c = np.asarray(layout.uterus_centre, np.float32)
    # Myometrium spans from the junctional zone (0.33 uy) to the serosa (uy) along y.
    inner, outer = 0.16 * uy, uy
    deep = case.tumour["myometrial_invasion"] == "myometrial_invasion_deep"
    fraction = rng.uniform(0.62, 0.88) if deep else rng.uniform(0.12, 0.38)
    if f["serosal_involvement"]:
        fraction = 1.15
    posterior_reach = inner + fraction * (outer - inner)  # from the centre, towards -y
    half = min(case.tumour["size_mm"] / 2.0, 0.62 * uz)
    ay = (posterior_reach + inner) / 2.0
    centre = c + np.array([0.0, -(posterior_reach - inner) / 2.0, 0.0], np.float32)
    axes = (min(0.38 * ux + 4, half), ay, half)
    sdf, bounds, longest = blob(
        centre, axes, rotation(rng, max_deg=5.0), Harmonics(rng, 0.05, max_freq=3.0)
    )
    canvas.paint(sdf, bounds, ENDOMETRIAL_TUMOUR, label=PRIMARY, blur=1.2)
    case.size_mm = longest
    case.details["invasion_fraction"] = float(fraction)
    sx = _side_x(case.details["side"])
    low = float(centre[2] - half)
    if f["cervical_stromal_invasion"]:
        _extension(
            canvas, (0, 2, low + 4), (0, 1, layout.cervix_bottom[2] + 6), 7.5, ENDOMETRIAL_TUMOUR
        )
    if f["adnexal_involvement"]:
        a_sdf, a_b = ellipsoid((sx * 48, 14, c[2] - 8), (15, 12, 13))
        canvas.paint(a_sdf, a_b, ENDOMETRIAL_TUMOUR, label=EXTENSION, blur=1.2, keep_labels=True)
    if f["vaginal_or_parametrial_involvement"]:
        if _p(rng, 0.5):
            _extension(
                canvas,
                (0, 0, layout.cervix_bottom[2]),
                (0, -3, vagina_third_z(layout) + 11),
                7.0,
                ENDOMETRIAL_TUMOUR,
            )
        else:
            _extension(canvas, (sx * 8, 2, 0), (sx * 40, -2, -4), 7.0, ENDOMETRIAL_TUMOUR)
    if f["pelvic_peritoneal_involvement"]:
        for _ in range(int(rng.integers(2, 4))):
            p = np.array(
                [rng.uniform(-25, 25), layout.rectum_y + 22, c[2] - uz * 0.6 + rng.uniform(-6, 6)],
                np.float32,
            )
            n_sdf, n_b = ellipsoid(p, (5.0, 4.0, 5.0))
            canvas.paint(n_sdf, n_b, ENDOMETRIAL_TUMOUR, label=EXTENSION, keep_labels=True)
    if f["bladder_mucosa"]:
        wall_y = layout.bladder_centre[1] - 23.0
        _extension(
            canvas,
            (0, c[1] + 5, c[2] - uz * 0.6),
            (0, wall_y + 7, layout.bladder_centre[2] + 4),
            8.0,
            ENDOMETRIAL_TUMOUR,
        )
    if f["bowel_mucosa"]:
        _extension(
            canvas,
            (0, centre[1] - ay + 4, centre[2]),
            (0, layout.rectum_y + 6, centre[2] - 8),
            8.0,
            ENDOMETRIAL_TUMOUR,
        )
    return canvas
