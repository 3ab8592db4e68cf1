"""Adnexal (O-RADS MRI) phantoms: lesions drawn over the lexicon, each showing its features.

A lesion is one of the kinds a radiologist meets (simple cyst, endometrioma, haemorrhagic
or mucinous cyst, multilocular cystadenoma, dermoid, fibroma, and solid or cystic-solid
tumours of each time-intensity curve); its lexicon fields follow from its kind and the
template's rules give the score. What each field means is what the images show:
- fluid type by T1 and T2 signal (endometriotic: T1 bright, T2 dark "shading";
  haemorrhagic: T1 bright; proteinaceous: intermediate; mucinous: T2 bright, T1 dark);
- lipid as fat signal (T1 and T2 bright, no diffusion signal);
- a wall painted 3 mm thick, enhancing or not; septa as 2.5 mm walls across the cyst;
- solid tissue enhancing over the DCE phases with the curve's shape (low: gradual;
  intermediate: a moderate rise to a plateau like the myometrium; high: a steep early
  rise above the myometrium and washout), or dark on T2 and on high-b DWI (fibrous);
- ascites as free fluid in the pouch of Douglas and paracolic gutters, peritoneal
  implants as enhancing nodules on the peritoneum.
Mask labels: lesion k has label k (1, 2) and its solid tissue label k + SOLID_PART (the
whole of a solid lesion, the nodule of a cystic-solid one), so a reader can learn to
outline solid tissue and measure its curve there; peritoneal implants have label 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reportgen.synth.acquisition import Acquisition
from reportgen.synth.pelvis import AIR, URINE, Layout, paint_pelvis
from reportgen.synth.scene import Canvas, Harmonics, Tissue, blob, ellipsoid, intersect, rotation

IMPLANTS = 5
SOLID_PART = 10  # lesion k's solid tissue has mask label k + SOLID_PART

FLUID = {
    "fluid_simple": URINE,
    "fluid_endometriotic": Tissue(t2=0.30, s0=0.55, adc=1100, t1=0.95),
    "fluid_hemorrhagic": Tissue(t2=0.60, s0=0.60, adc=1500, t1=0.75),
    "fluid_proteinaceous": Tissue(t2=0.78, s0=0.70, adc=2200, t1=0.45),
    "fluid_mucinous": Tissue(t2=0.92, s0=0.75, adc=2500, t1=0.22),
}
LIPID = Tissue(t2=0.85, s0=0.04, adc=300, t1=0.92, e1=0.02, e2=0.02, e3=0.02)
WALL = {
    "wall_not_enhancing": Tissue(t2=0.30, s0=0.40, adc=1400, t1=0.33, e1=0.05, e2=0.06, e3=0.06),
    "wall_smooth_enhancing": Tissue(t2=0.30, s0=0.45, adc=1400, t1=0.33, e1=0.7, e2=0.9, e3=1.0),
}
SOLID = {
    "tic_low_risk": Tissue(t2=0.45, s0=0.55, adc=1300, t1=0.33, e1=0.25, e2=0.55, e3=0.85),
    "tic_intermediate_risk": Tissue(t2=0.50, s0=0.70, adc=950, t1=0.33, e1=0.85, e2=1.0, e3=1.0),
    "tic_high_risk": Tissue(t2=0.52, s0=0.75, adc=800, t1=0.33, e1=2.0, e2=1.5, e3=1.2),
}
DARK_SOLID = Tissue(t2=0.13, s0=0.18, adc=950, t1=0.33, e1=0.15, e2=0.3, e3=0.4)

# kind -> (weight among benign or malignant draws, size range mm)
BENIGN_KINDS = {
    "simple_cyst": (0.24, (25, 80)),
    "endometrioma": (0.14, (25, 70)),
    "complex_unilocular_cyst": (0.12, (25, 75)),
    "haemorrhagic_cyst": (0.08, (25, 60)),
    "multilocular_cyst": (0.12, (40, 90)),
    "dermoid": (0.12, (25, 70)),
    "fibroma": (0.08, (25, 70)),
    "solid_low_risk": (0.10, (30, 80)),
}
MALIGNANT_KINDS = {
    "solid_intermediate_risk": (0.40, (35, 90)),
    "solid_high_risk": (0.50, (35, 90)),
    "dermoid_with_solid_tissue": (0.10, (35, 80)),
}


@dataclass
class AdnexalLesion:
    label: int
    kind: str
    fields: dict
    size_mm: float = 0.0
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass
class OvaryCase:
    fields: dict
    lesions: list[AdnexalLesion]


def _pick(rng: np.random.Generator, kinds: dict) -> str:
    names = list(kinds)
    weights = np.array([kinds[k][0] for k in names])
    return str(rng.choice(names, p=weights / weights.sum()))


def lesion_fields(kind: str, rng: np.random.Generator) -> dict:
    """The lexicon values a lesion of this kind shows (only the fields that apply)."""
    solid = kind.startswith("solid_") or kind in ("fibroma", "dermoid_with_solid_tissue")
    f: dict = {"lipid": kind.startswith("dermoid"), "solid_tissue": solid}
    if kind == "fibroma":
        f["composition"] = "composition_solid"
    elif solid and not kind.startswith("dermoid"):
        f["composition"] = str(rng.choice(["composition_solid", "composition_cystic_solid"]))
    elif kind == "multilocular_cyst":
        f["composition"] = "composition_multilocular_cyst"
    elif kind == "dermoid_with_solid_tissue":
        f["composition"] = "composition_cystic_solid"
    else:
        f["composition"] = "composition_unilocular_cyst"
    if f["composition"] != "composition_solid":
        f["fluid"] = {
            "endometrioma": "fluid_endometriotic",
            "complex_unilocular_cyst": str(
                rng.choice(["fluid_hemorrhagic", "fluid_proteinaceous", "fluid_mucinous"])
            ),
            "haemorrhagic_cyst": "fluid_hemorrhagic",
            "multilocular_cyst": str(
                rng.choice(["fluid_simple", "fluid_mucinous", "fluid_proteinaceous"])
            ),
        }.get(kind, "fluid_simple")
    if f["composition"] in ("composition_unilocular_cyst", "composition_multilocular_cyst"):
        enhancing = kind in ("endometrioma", "complex_unilocular_cyst", "multilocular_cyst") or (
            kind in ("simple_cyst", "dermoid") and rng.random() < 0.5
        )
        f["wall"] = "wall_smooth_enhancing" if enhancing else "wall_not_enhancing"
    if solid:
        f["dark_t2_dwi"] = kind == "fibroma"
        if kind != "fibroma":
            f["tic"] = {
                "solid_intermediate_risk": "tic_intermediate_risk",
                "solid_high_risk": "tic_high_risk",
            }.get(kind, "tic_low_risk")
    return f


def sample_ovary(rng: np.random.Generator, malignant_fraction: float) -> OvaryCase:
    count = int(rng.choice([0, 1, 2], p=[0.12, 0.68, 0.20]))
    malignant = count > 0 and rng.random() < malignant_fraction
    sides = [str(s) for s in rng.permutation(["right", "left"])[:count]]
    lesions = []
    for k, side in enumerate(sides):
        kind = _pick(rng, MALIGNANT_KINDS if malignant and k == 0 else BENIGN_KINDS)
        fields = {"laterality": side, **lesion_fields(kind, rng)}
        lesions.append(AdnexalLesion(label=k + 1, kind=kind, fields=fields))
    implants = malignant and rng.random() < 0.35
    study = {
        "peritoneal_implants": implants,
        "ascites": bool(rng.random() < (0.6 if malignant else 0.12)),
    }
    return OvaryCase(study, lesions)


def _size_range(kind: str) -> tuple[float, float]:
    return {**BENIGN_KINDS, **MALIGNANT_KINDS}[kind][1]


def _slab(centre: np.ndarray, normal: np.ndarray, thickness: float):
    n = normal / np.linalg.norm(normal)
    return lambda p: np.abs((p - centre) @ n) - thickness / 2


def _paint_lesion(
    canvas: Canvas, lesion: AdnexalLesion, layout: Layout, rng: np.random.Generator
) -> None:
    f = lesion.fields
    size = float(rng.uniform(*_size_range(lesion.kind)))
    r = size / 2
    sx = 1.0 if f["laterality"] == "right" else -1.0
    ovary_z = layout.uterus_centre[2] - 8
    centre = np.array(
        [sx * min(48 + 0.3 * r, 112 - r), 14 + rng.uniform(-5, 5), min(ovary_z, 52 - r)],
        np.float32,
    )
    axes = tuple(r * s for s in (1.0, rng.uniform(0.8, 0.95), rng.uniform(0.85, 1.0)))
    rot = rotation(rng, max_deg=25.0)
    wobble = 0.05 if f["composition"] != "composition_solid" else 0.10
    sdf, bounds, longest = blob(centre, axes, rot, Harmonics(rng, wobble, max_freq=2.5))
    lesion.size_mm, lesion.centre = longest, centre
    label = lesion.label
    if f["composition"] == "composition_solid":
        tissue = DARK_SOLID if f.get("dark_t2_dwi") else SOLID[f["tic"]]
        canvas.paint(sdf, bounds, tissue, label=label + SOLID_PART, blur=1.0)
        return
    wall = WALL.get(f.get("wall", ""), WALL["wall_smooth_enhancing"])
    canvas.paint(sdf, bounds, wall, label=label, blur=1.0)
    inner = lambda p: sdf(p) + 3.0  # noqa: E731 - the lumen, 3 mm inside the wall
    content = LIPID if f["lipid"] else FLUID[f["fluid"]]
    canvas.paint(inner, bounds, content, label=label, blur=1.0)
    if f["lipid"]:  # a dermoid's dependent fluid layer under its fat
        level = lambda p: p[..., 1] - (centre[1] - 0.35 * r)  # noqa: E731
        canvas.paint(intersect(inner, level), bounds, FLUID[f["fluid"]], label=label)
    if f["composition"] == "composition_multilocular_cyst":
        for _ in range(int(rng.integers(2, 4))):
            septum = _slab(centre + rng.uniform(-0.3, 0.3, 3) * r, rng.normal(size=3), 2.5)
            canvas.paint(intersect(inner, septum), bounds, wall, label=label, blur=1.0)
    if f["composition"] == "composition_cystic_solid":
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        nodule_r = r * rng.uniform(0.3, 0.45)
        at = centre + direction * (r - 3.0 - 0.5 * nodule_r)
        n_sdf, n_b = ellipsoid(at, (nodule_r, nodule_r * 0.85, nodule_r * 0.9), rotation(rng))
        tissue = DARK_SOLID if f.get("dark_t2_dwi") else SOLID[f["tic"]]
        canvas.paint(n_sdf, n_b, tissue, label=label + SOLID_PART, blur=1.0)


def _paint_peritoneum(
    canvas: Canvas, case: OvaryCase, layout: Layout, rng: np.random.Generator
) -> None:
    fluid = URINE.with_(s0=0.75)
    if case.fields["ascites"]:
        for centre, axes in (
            ((0, -22, 12), (55, 6, 22)),  # pouch of Douglas, behind the uterus
            ((88, 0, 30), (8, 25, 30)),  # paracolic gutters
            ((-88, 0, 30), (8, 25, 30)),
        ):
            a_sdf, a_b = ellipsoid(centre, axes)
            canvas.paint(a_sdf, a_b, fluid, keep_labels=True)
    if case.fields["peritoneal_implants"]:
        for _ in range(int(rng.integers(2, 5))):
            at = (
                (rng.uniform(-60, 60), -24.0, rng.uniform(-5, 40))  # on the pouch of Douglas
                if rng.random() < 0.5
                else (rng.uniform(-60, 60), 35.0, rng.uniform(30, 45))  # above the bladder
            )
            r = rng.uniform(5.0, 8.0)
            i_sdf, i_b = ellipsoid(at, (r, r * 0.7, r * 0.9))
            canvas.paint(i_sdf, i_b, SOLID["tic_high_risk"], label=IMPLANTS, keep_labels=True)


def render_ovary(case: OvaryCase, acq: Acquisition, rng: np.random.Generator) -> Canvas:
    layout = Layout()
    canvas = Canvas(acq.grid(), AIR)
    paint_pelvis(canvas, layout, rng)
    _paint_peritoneum(canvas, case, layout, rng)
    for lesion in case.lesions:
        _paint_lesion(canvas, lesion, layout, rng)
    return canvas


def visible_truth(case: OvaryCase, canvas: Canvas) -> list[AdnexalLesion]:
    """Truth says only what the slab shows: lesions and implants that were painted."""
    if case.fields["peritoneal_implants"] and not np.any(canvas.labels == IMPLANTS):
        case.fields["peritoneal_implants"] = False
    return [
        les
        for les in case.lesions
        if np.any(np.isin(canvas.labels, (les.label, les.label + SOLID_PART)))
    ]


def pathology(lesion: AdnexalLesion) -> str:
    return "malignant" if lesion.kind in MALIGNANT_KINDS else "benign"
