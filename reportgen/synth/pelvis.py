"""Female pelvis anatomy for the cervix and endometrium phantoms (axial slab, RAS mm).

Bladder anterior, rectum posterior, uterus with zonal anatomy (endometrium, junctional
zone, myometrium), cervix with its T2-dark stromal ring, vagina below, ureters, iliac
vessels and nodes along the side walls, para-aortic nodes by the aorta at the top of
the field of view. Tumours are painted on top by `gynae`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reportgen.synth.scene import Canvas, Tissue, capsule, ellipsoid, shell

AIR = Tissue(0.0, 0.0, 0.0, 0.0)
FAT = Tissue(t2=0.80, s0=0.04, adc=300, t1=0.85, e1=0.02, e2=0.02, e3=0.02)
MUSCLE = Tissue(t2=0.22, s0=0.35, adc=1400, t1=0.35, e1=0.12, e2=0.16, e3=0.18)
MARROW = Tissue(t2=0.55, s0=0.10, adc=500, t1=0.70, e1=0.05, e2=0.06, e3=0.06)
URINE = Tissue(t2=1.00, s0=0.80, adc=3000, t1=0.08)
BOWEL = Tissue(t2=0.15, s0=0.05, adc=1000, t1=0.10)
BLOOD = Tissue(t2=0.10, s0=0.05, adc=2500, t1=0.35, e1=2.5, e2=1.6, e3=1.2)
MYOMETRIUM = Tissue(t2=0.50, s0=0.55, adc=1500, t1=0.33, e1=0.9, e2=1.0, e3=1.0)
ENDOMETRIUM = Tissue(t2=0.92, s0=0.60, adc=1500, t1=0.30, e1=0.5, e2=0.55, e3=0.6)
JUNCTIONAL = Tissue(t2=0.18, s0=0.50, adc=1300, t1=0.33, e1=0.8, e2=0.9, e3=0.9)
STROMA = Tissue(t2=0.17, s0=0.45, adc=1400, t1=0.34, e1=0.5, e2=0.65, e3=0.7)
VAGINA = Tissue(t2=0.30, s0=0.40, adc=1400, t1=0.34, e1=0.5, e2=0.55, e3=0.55)
OVARY = Tissue(t2=0.45, s0=0.45, adc=1500, t1=0.32, e1=0.4, e2=0.5, e3=0.5)
NODE = Tissue(t2=0.40, s0=0.50, adc=1200, t1=0.35, e1=0.5, e2=0.55, e3=0.55)
NODE_METASTATIC = Tissue(t2=0.45, s0=0.65, adc=880, t1=0.32, e1=0.9, e2=0.85, e3=0.8)


@dataclass(frozen=True)
class Layout:
    """Where the organs are (mm). The uterus sits higher for endometrium studies."""

    uterus_centre: tuple[float, float, float] = (0.0, 10.0, 35.0)
    uterus_axes: tuple[float, float, float] = (38.0, 28.0, 30.0)
    cervix_top: tuple[float, float, float] = (0.0, 5.0, 12.0)
    cervix_bottom: tuple[float, float, float] = (0.0, 0.0, -12.0)
    cervix_radius: float = 15.0
    vagina_bottom_z: float = -60.0
    bladder_centre: tuple[float, float, float] = (0.0, 48.0, -5.0)
    rectum_y: float = -42.0

    @property
    def vagina_top_z(self) -> float:
        return self.cervix_bottom[2] - 2.0


def vagina_third_z(layout: Layout) -> float:
    """z below which tumour is in the lower third of the vagina."""
    top, bottom = layout.vagina_top_z, layout.vagina_bottom_z
    return top - 2.0 / 3.0 * (top - bottom)


def paint_pelvis(
    canvas: Canvas,
    layout: Layout,
    rng: np.random.Generator,
    *,
    dilated_ureters: tuple[bool, bool] = (False, False),
    metastatic_pelvic_nodes: int = 0,
    metastatic_paraaortic_nodes: int = 0,
    node_label: int = 0,
    ureter_label: int = 0,
) -> list[tuple[np.ndarray, float]]:
    """Paint the pelvis; returns each metastatic node painted: (centre mm, short axis mm)."""
    long = 400.0
    body, body_b = ellipsoid((0, 0, 0), (165, 118, long))
    canvas.paint(body, body_b, FAT, extruded=True)
    bone = shell(ellipsoid((0, -5, 0), (118, 88, long))[0], 12.0)
    canvas.paint(bone, ((-130, -105, -long), (130, 95, long)), MARROW, extruded=True)
    for sx in (1.0, -1.0):
        ob, ob_b = ellipsoid((sx * 96, 0, 0), (11, 38, 70))
        canvas.paint(ob, ob_b, MUSCLE)
    # Bladder: wall and urine.
    bl_sdf, bl_b = ellipsoid(layout.bladder_centre, (38, 26, 30))
    canvas.paint(bl_sdf, bl_b, MUSCLE)
    urine, urine_b = ellipsoid(layout.bladder_centre, (35, 23, 27))
    canvas.paint(urine, urine_b, URINE)
    # Rectum: wall and lumen.
    re_sdf, re_b = capsule((0, layout.rectum_y, -65), (0, layout.rectum_y - 5, 45), 15.0)
    canvas.paint(re_sdf, re_b, MUSCLE)
    lumen, lumen_b = capsule((0, layout.rectum_y, -65), (0, layout.rectum_y - 5, 45), 10.0)
    canvas.paint(lumen, lumen_b, BOWEL)
    # Vessels along the side walls and the aorta at the top.
    for sx in (1.0, -1.0):
        v, vb = capsule((sx * 72, -5, -65), (sx * 55, -22, 65), 6.0)
        canvas.paint(v, vb, BLOOD)
    ao, ao_b = capsule((8, -40, 35), (8, -38, 70), 9.0)
    canvas.paint(ao, ao_b, BLOOD)
    # Ureters, dilated (hydroureteronephrosis) when obstructed; a dilated one labelled.
    for side, dilated in zip((1.0, -1.0), dilated_ureters, strict=True):
        radius = 7.5 if dilated else 2.5
        u, ub = capsule((side * 40, -22, 65), (side * 24, 22, -8), radius)
        canvas.paint(u, ub, URINE, label=ureter_label if dilated else 0)
    # Uterus: myometrium, junctional zone, endometrium.
    ut, ut_b = ellipsoid(layout.uterus_centre, layout.uterus_axes)
    canvas.paint(ut, ut_b, MYOMETRIUM)
    ax, ay, az = layout.uterus_axes
    jz, jz_b = ellipsoid(layout.uterus_centre, (ax * 0.5, ay * 0.33, az * 0.72))
    canvas.paint(jz, jz_b, JUNCTIONAL)
    en, en_b = ellipsoid(layout.uterus_centre, (ax * 0.38, ay * 0.16, az * 0.6))
    canvas.paint(en, en_b, ENDOMETRIUM)
    # Cervix with its stromal ring and a T2-bright canal; vagina below.
    cx, cxb = capsule(layout.cervix_bottom, layout.cervix_top, layout.cervix_radius)
    canvas.paint(cx, cxb, STROMA)
    canal, canal_b = capsule(layout.cervix_bottom, layout.cervix_top, 3.5)
    canvas.paint(canal, canal_b, ENDOMETRIUM)
    va, va_b = capsule((0, -4, layout.vagina_bottom_z), (0, -1, layout.vagina_top_z), 9.0)
    canvas.paint(va, va_b, VAGINA)
    # Ovaries with follicles.
    for sx in (1.0, -1.0):
        centre = np.array([sx * 48, 14, layout.uterus_centre[2] - 8])
        ov, ov_b = ellipsoid(centre, (13, 9, 11))
        canvas.paint(ov, ov_b, OVARY)
        for _ in range(3):
            f_sdf, f_b = ellipsoid(centre + rng.uniform(-5, 5, 3), (2.5, 2.5, 2.5))
            canvas.paint(f_sdf, f_b, URINE)
    # Lymph nodes: normal small ovals everywhere, enlarged round nodes where metastatic.
    metastatic: list[tuple[np.ndarray, float]] = []
    pelvic_sites = [(sx * 62, -2 + dy, z) for sx in (1.0, -1.0) for dy, z in ((0, -20), (-8, 15))]
    aortic_sites = [(-8, -35, 50), (24, -38, 56)]
    for sites, n_bad in (
        (pelvic_sites, metastatic_pelvic_nodes),
        (aortic_sites, metastatic_paraaortic_nodes),
    ):
        order = rng.permutation(len(sites))
        for rank, i in enumerate(order):
            centre = sites[i]
            if rank < n_bad:
                r = rng.uniform(7.0, 11.0)
                n_sdf, n_b = ellipsoid(centre, (r, r * 0.9, r * 0.95))
                canvas.paint(n_sdf, n_b, NODE_METASTATIC, label=node_label)
                metastatic.append((np.asarray(centre, float), 2 * 0.9 * r))  # its short axis
            else:
                n_sdf, n_b = ellipsoid(centre, (3.5, 2.5, 3.0))
                canvas.paint(n_sdf, n_b, NODE)
    return metastatic
