"""Breast MRI phantoms (BI-RADS MRI): anatomy, lesions whose images show their features.

A latent pathology is drawn per lesion (benign: fibroadenoma, cyst, benign non-mass
enhancement, focus; malignant: invasive ductal-like, triple-negative-like, DCIS-like
non-mass enhancement), then descriptors are drawn from distributions that overlap as in
the literature (spiculation, washout and restricted diffusion favour malignancy; the
triple-negative-like subtype is often round, circumscribed, rim-enhancing and T2-bright).
Every descriptor is rendered: kinetics in the DCE phases, T2 signal, ADC, shape and
margin in 3D geometry, internal enhancement as spatial patterns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from reportgen.measure.breast import DEPTH_THIRDS
from reportgen.synth.acquisition import Acquisition
from reportgen.synth.scene import (
    Canvas,
    Harmonics,
    SurfaceWaves,
    Tissue,
    blob,
    capsule,
    ellipsoid,
    half_space,
    intersect,
    longest_diameter,
    rotation,
    roughen,
    shell,
    smooth_noise,
    smooth_union,
)

AIR = Tissue(0.0, 0.0, 0.0, 0.0)
FAT = Tissue(t2=0.80, s0=0.04, adc=300, t1=0.85, e1=0.02, e2=0.02, e3=0.02)
FGT = Tissue(t2=0.42, s0=0.45, adc=1700, t1=0.30)
MUSCLE = Tissue(t2=0.22, s0=0.35, adc=1400, t1=0.35, e1=0.12, e2=0.16, e3=0.18)
SKIN = Tissue(t2=0.50, s0=0.30, adc=1500, t1=0.40, e1=0.10, e2=0.12, e3=0.12)
THICK_SKIN = Tissue(t2=0.75, s0=0.45, adc=1900, t1=0.38, e1=0.25, e2=0.30, e3=0.32)
LUNG = Tissue(t2=0.03, s0=0.02, adc=0, t1=0.02)
BLOOD = Tissue(t2=0.30, s0=0.10, adc=2500, t1=0.35, e1=2.0, e2=1.4, e3=1.1)
NODE = Tissue(t2=0.40, s0=0.50, adc=1200, t1=0.35, e1=0.5, e2=0.55, e3=0.55)
NODE_METASTATIC = Tissue(t2=0.36, s0=0.62, adc=880, t1=0.32, e1=1.1, e2=1.0, e3=0.85)
CYST = Tissue(t2=1.00, s0=0.70, adc=2800, t1=0.20)

FGT_FRACTION = {
    "fgt_almost_entirely_fat": 0.10,
    "fgt_scattered": 0.30,
    "fgt_heterogeneous": 0.55,
    "fgt_extreme": 0.80,
}
BPE_LEVEL = {"bpe_minimal": 0.08, "bpe_mild": 0.20, "bpe_moderate": 0.40, "bpe_marked": 0.70}
T2_SIGNAL = {"t2_hyperintense": 0.85, "t2_isointense": 0.42, "t2_hypointense": 0.20}
INITIAL = {"initial_slow": (0.25, 0.45), "initial_medium": (0.6, 0.9), "initial_fast": (1.1, 1.6)}
DELAYED = {
    "delayed_persistent": (1.15, 1.30),
    "delayed_plateau": (1.03, 0.98),
    "delayed_washout": (0.90, 0.72),
}

# Descriptor distributions per latent subtype: {field: {value: probability}}.
SUBTYPES: dict[str, dict] = {
    "fibroadenoma": {
        "type": {"mass": 1.0},
        "shape": {"shape_oval": 0.75, "shape_round": 0.20, "shape_irregular": 0.05},
        "margin": {
            "margin_circumscribed": 0.85,
            "margin_irregular": 0.13,
            "margin_spiculated": 0.02,
        },
        "internal_enhancement": {
            "enhancement_homogeneous": 0.50,
            "enhancement_dark_septations": 0.30,
            "enhancement_heterogeneous": 0.20,
        },
        "kinetics_initial": {"initial_slow": 0.40, "initial_medium": 0.45, "initial_fast": 0.15},
        "kinetics_delayed": {
            "delayed_persistent": 0.75,
            "delayed_plateau": 0.20,
            "delayed_washout": 0.05,
        },
        "t2_signal": {"t2_hyperintense": 0.75, "t2_isointense": 0.20, "t2_hypointense": 0.05},
        "diffusion": {"diffusion_not_restricted": 0.85, "diffusion_restricted": 0.15},
        "radius_mm": (4.0, 14.0),
    },
    "cyst": {
        "type": {"breast_cyst": 1.0},
        "t2_signal": {"t2_hyperintense": 1.0},
        "diffusion": {"diffusion_not_restricted": 1.0},
        "radius_mm": (3.5, 12.0),
    },
    "benign_nme": {
        "type": {"non_mass_enhancement": 1.0},
        "nme_distribution": {
            "nme_focal": 0.45,
            "nme_regional": 0.35,
            "nme_linear": 0.10,
            "nme_segmental": 0.10,
        },
        "nme_pattern": {"nme_homogeneous": 0.50, "nme_heterogeneous": 0.40, "nme_clumped": 0.10},
        "kinetics_initial": {"initial_slow": 0.50, "initial_medium": 0.40, "initial_fast": 0.10},
        "kinetics_delayed": {"delayed_persistent": 0.80, "delayed_plateau": 0.20},
        "t2_signal": {"t2_isointense": 0.80, "t2_hyperintense": 0.20},
        "diffusion": {"diffusion_not_restricted": 0.85, "diffusion_restricted": 0.15},
        "radius_mm": (7.0, 16.0),
    },
    "focus": {
        "type": {"focus": 1.0},
        "kinetics_initial": {"initial_medium": 0.5, "initial_fast": 0.3, "initial_slow": 0.2},
        "kinetics_delayed": {
            "delayed_persistent": 0.75,
            "delayed_plateau": 0.20,
            "delayed_washout": 0.05,
        },
        "t2_signal": {"t2_hyperintense": 0.5, "t2_isointense": 0.5},
        "diffusion": {"diffusion_not_restricted": 0.9, "diffusion_restricted": 0.1},
        "radius_mm": (1.6, 2.2),
    },
    "invasive_ductal": {
        "type": {"mass": 1.0},
        "shape": {"shape_irregular": 0.75, "shape_round": 0.15, "shape_oval": 0.10},
        "margin": {
            "margin_spiculated": 0.45,
            "margin_irregular": 0.45,
            "margin_circumscribed": 0.10,
        },
        "internal_enhancement": {
            "enhancement_heterogeneous": 0.60,
            "enhancement_rim": 0.25,
            "enhancement_homogeneous": 0.15,
        },
        "kinetics_initial": {"initial_fast": 0.75, "initial_medium": 0.20, "initial_slow": 0.05},
        "kinetics_delayed": {
            "delayed_washout": 0.55,
            "delayed_plateau": 0.35,
            "delayed_persistent": 0.10,
        },
        "t2_signal": {"t2_isointense": 0.50, "t2_hypointense": 0.35, "t2_hyperintense": 0.15},
        "diffusion": {"diffusion_restricted": 0.85, "diffusion_not_restricted": 0.15},
        "radius_mm": (4.0, 18.0),
    },
    "triple_negative": {
        "type": {"mass": 1.0},
        "shape": {"shape_round": 0.50, "shape_oval": 0.30, "shape_irregular": 0.20},
        "margin": {
            "margin_circumscribed": 0.45,
            "margin_irregular": 0.45,
            "margin_spiculated": 0.10,
        },
        "internal_enhancement": {
            "enhancement_rim": 0.60,
            "enhancement_heterogeneous": 0.30,
            "enhancement_homogeneous": 0.10,
        },
        "kinetics_initial": {"initial_fast": 0.85, "initial_medium": 0.15},
        "kinetics_delayed": {
            "delayed_washout": 0.50,
            "delayed_plateau": 0.40,
            "delayed_persistent": 0.10,
        },
        "t2_signal": {"t2_hyperintense": 0.60, "t2_isointense": 0.30, "t2_hypointense": 0.10},
        "diffusion": {"diffusion_restricted": 0.90, "diffusion_not_restricted": 0.10},
        "radius_mm": (6.0, 18.0),
    },
    "dcis": {
        "type": {"non_mass_enhancement": 1.0},
        "nme_distribution": {
            "nme_segmental": 0.45,
            "nme_linear": 0.30,
            "nme_focal": 0.15,
            "nme_regional": 0.10,
        },
        "nme_pattern": {
            "nme_clumped": 0.45,
            "nme_clustered_ring": 0.30,
            "nme_heterogeneous": 0.20,
            "nme_homogeneous": 0.05,
        },
        "kinetics_initial": {"initial_medium": 0.50, "initial_fast": 0.35, "initial_slow": 0.15},
        "kinetics_delayed": {
            "delayed_plateau": 0.45,
            "delayed_persistent": 0.35,
            "delayed_washout": 0.20,
        },
        "t2_signal": {"t2_isointense": 0.70, "t2_hyperintense": 0.20, "t2_hypointense": 0.10},
        "diffusion": {"diffusion_restricted": 0.60, "diffusion_not_restricted": 0.40},
        "radius_mm": (8.0, 18.0),
    },
}
BENIGN = {"fibroadenoma": 0.50, "cyst": 0.25, "benign_nme": 0.10, "focus": 0.15}
MALIGNANT = {"invasive_ductal": 0.70, "triple_negative": 0.20, "dcis": 0.10}


def _draw(rng: np.random.Generator, options: dict[str, float]) -> str:
    keys = list(options)
    p = np.asarray([options[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


@dataclass
class Lesion:
    label: int
    pathology: str  # "benign" | "malignant"
    subtype: str
    fields: dict
    centre: np.ndarray
    radius: float
    size_mm: float = 0.0
    placed: bool = False  # centre chosen (`place_lesion`); `render` places the others


@dataclass
class BreastCase:
    fields: dict
    lesions: list[Lesion] = field(default_factory=list)
    breast_depth: float = 95.0
    bpe_asymmetric_side: str | None = None
    adenopathy_side: str | None = None


def sample_case(
    rng: np.random.Generator,
    malignant_fraction: float = 0.3,
    n_lesions: tuple[float, float, float] = (0.4, 0.45, 0.15),
) -> BreastCase:
    """Draw the ground truth: composition, enhancement, lesions and associated features."""
    fields = {
        "fgt_amount": _draw(
            rng,
            {
                "fgt_almost_entirely_fat": 0.10,
                "fgt_scattered": 0.40,
                "fgt_heterogeneous": 0.40,
                "fgt_extreme": 0.10,
            },
        ),
        "bpe_level": _draw(
            rng, {"bpe_minimal": 0.35, "bpe_mild": 0.40, "bpe_moderate": 0.18, "bpe_marked": 0.07}
        ),
        "bpe_symmetry": _draw(rng, {"bpe_symmetric": 0.9, "bpe_asymmetric": 0.1}),
    }
    case = BreastCase(fields=fields, breast_depth=float(rng.uniform(85, 105)))
    if fields["bpe_symmetry"] == "bpe_asymmetric":
        case.bpe_asymmetric_side = str(rng.choice(["right", "left"]))
    count = int(rng.choice(3, p=np.asarray(n_lesions) / sum(n_lesions)))
    for label in range(1, count + 1):
        malignant = rng.random() < malignant_fraction
        subtype = _draw(rng, MALIGNANT if malignant else BENIGN)
        spec = SUBTYPES[subtype]
        lesion_fields = {key: _draw(rng, dist) for key, dist in spec.items() if key != "radius_mm"}
        radius = float(rng.uniform(*spec["radius_mm"]))
        lesion_fields["laterality"] = str(rng.choice(["right", "left"]))
        lesion_fields["clock"] = f"clock_{int(rng.integers(1, 13))}"
        lesion_fields["depth"] = str(
            rng.choice(["depth_anterior", "depth_middle", "depth_posterior"])
        )
        case.lesions.append(
            Lesion(
                label,
                "malignant" if malignant else "benign",
                subtype,
                lesion_fields,
                np.zeros(3),
                radius,
            )
        )
    any_malignant = any(les.pathology == "malignant" for les in case.lesions)
    fields["axillary_adenopathy"] = bool(rng.random() < (0.35 if any_malignant else 0.03))
    fields["skin_thickening"] = bool(rng.random() < (0.10 if any_malignant else 0.03))
    fields["nipple_retraction"] = bool(any_malignant and rng.random() < 0.08)
    if fields["axillary_adenopathy"]:
        malignant_sides = [
            les.fields["laterality"] for les in case.lesions if les.pathology == "malignant"
        ]
        case.adenopathy_side = (
            malignant_sides[0] if malignant_sides else str(rng.choice(["right", "left"]))
        )
    return case


# --- geometry ---------------------------------------------------------------------------------


def _breast_centre(side: str) -> np.ndarray:
    """Patient right is +x in RAS; each breast sits on the chest wall at y = 2 mm."""
    return np.array([65.0 if side == "right" else -65.0, 2.0, 0.0], dtype=np.float32)


BREAST_AXES = (58.0, 55.0)  # lateral and craniocaudal semi-axes (mm); depth is per case
TORSO_CENTRE = (0.0, -68.0, 0.0)  # the torso (extruded along z): its fat and skin line
TORSO_AXES = (120.0, 78.0)  # left-right / anterior-posterior semi-axes (mm)
# The pectoralis (extruded along z): centre and left-right / anterior-posterior semi-axes
# (mm). The torso's fat lies between its front and each breast's base, as the
# retromammary fat does.
MUSCLE_CENTRE = (0.0, -72.0, 0.0)
MUSCLE_AXES = (108.0, 70.0)
NIPPLE_LENGTH_MM, NIPPLE_RADIUS_MM = 7.0, 4.0


def nipple_retracted(case: BreastCase, side: str) -> bool:
    """A retracted nipple: drawn for the case and a malignancy in that breast."""
    return bool(case.fields.get("nipple_retraction")) and any(
        les.fields["laterality"] == side and les.pathology == "malignant" for les in case.lesions
    )


def depth_axis(case: BreastCase, side: str) -> tuple[float, float]:
    """Anterior-posterior positions (mm) of the chest wall behind the nipple (the
    pectoralis's front) and of the nipple's apex (a retracted nipple's lies at the
    breast's front): the line whose thirds the BI-RADS lexicon's depth names."""
    x = abs(float(_breast_centre(side)[0]))
    wall = MUSCLE_CENTRE[1] + MUSCLE_AXES[1] * np.sqrt(max(0.0, 1 - (x / MUSCLE_AXES[0]) ** 2))
    front = float(_breast_centre(side)[1]) + case.breast_depth
    apex = front if nipple_retracted(case, side) else front + NIPPLE_LENGTH_MM + NIPPLE_RADIUS_MM
    return float(wall), apex


def _depth_range(lesion: Lesion, case: BreastCase, rho_low: float) -> tuple[float, float] | None:
    """Anterior-posterior span (mm) the lesion's centre may take in its depth third: on
    the lexicon's line from the chest wall to the nipple (`depth_axis`), the part of the
    third inside the breast with room for the lesion around the nipple's axis; None if
    too little is left."""
    base_y = float(_breast_centre(lesion.fields["laterality"])[1])
    third = DEPTH_THIRDS.index(lesion.fields["depth"])
    wall, apex = depth_axis(case, lesion.fields["laterality"])
    widest = (rho_low + lesion.radius + 5.0) / min(BREAST_AXES)  # where room runs out
    front = base_y + case.breast_depth * np.sqrt(max(0.0, 1 - widest**2))
    lo = max(wall + third * (apex - wall) / 3, base_y + 3.0)
    hi = min(wall + (third + 1) * (apex - wall) / 3, front)
    return (lo, hi) if hi - lo >= 6.0 else None


def _place(
    rng: np.random.Generator,
    lesion: Lesion,
    case: BreastCase,
    placed: list[Lesion],
    lexicon: bool = True,
) -> bool:
    """Choose a centre matching the lesion's side, clock face and depth third, clear of
    the lesions placed before it: in the middle of the third's span (`_depth_range`),
    away from where measurement could not tell one third from the next. The legacy
    placement (`lexicon=False`) counts thirds of the breast ellipsoid from its base."""
    base = _breast_centre(lesion.fields["laterality"])
    theta = np.deg2rad(int(lesion.fields["clock"].split("_")[1]) * 30.0)
    rho_low = 14.0
    depth = case.breast_depth
    span = _depth_range(lesion, case, rho_low) if lexicon else None
    if lexicon and span is None:
        return False
    third = DEPTH_THIRDS.index(lesion.fields["depth"])
    for _ in range(40):
        if span is not None:
            y = span[0] + rng.uniform(0.2, 0.8) * (span[1] - span[0])
            frac = (y - base[1]) / depth
        else:
            frac = (third + rng.uniform(0.25, 0.75)) / 3.0
            y = base[1] + frac * depth
        room = min(BREAST_AXES) * np.sqrt(max(0.0, 1 - frac**2)) - lesion.radius - 5.0
        if room < rho_low:
            continue
        rho = rng.uniform(rho_low, room)
        # Clock face seen from the front: 12 superior (+z), 3 towards patient left (-x).
        centre = np.array(
            [base[0] - np.sin(theta) * rho, y, base[2] + np.cos(theta) * rho], dtype=np.float32
        )
        if all(
            np.linalg.norm(centre - other.centre) > lesion.radius + other.radius + 12
            for other in placed
        ):
            lesion.centre = centre
            lesion.placed = True
            return True
    return False


def place_lesion(
    rng: np.random.Generator,
    lesion: Lesion,
    case: BreastCase,
    placed: list[Lesion],
    protocol: str,
) -> bool:
    """Place a lesion where its fields say, else deeper, else smaller; False: nowhere fits
    (not painted, so not part of the truth). The clinical protocol places depth as the
    lexicon counts it; the low-resolution protocol keeps the legacy placement byte for
    byte, the bundled model's training data, until that model is retrained on clinical
    phantoms (issue 37)."""
    lexicon = protocol == "clinical"
    if _place(rng, lesion, case, placed, lexicon):
        return True
    lesion.fields["depth"] = "depth_posterior"
    if _place(rng, lesion, case, placed, lexicon):
        return True
    lesion.radius *= 0.6
    return _place(rng, lesion, case, placed, lexicon)


def place_lesions(case: BreastCase, rng: np.random.Generator, protocol: str) -> list[Lesion]:
    """Choose every lesion's centre before rendering (lesion views need it to aim the
    field of view); the lesions that fit, in order."""
    placed: list[Lesion] = []
    for lesion in case.lesions:
        if place_lesion(rng, lesion, case, placed, protocol):
            placed.append(lesion)
    return placed


def _enhancement(tissue: Tissue, initial: str, delayed: str, rng: np.random.Generator) -> Tissue:
    e1 = rng.uniform(*INITIAL[initial])
    r2, r3 = DELAYED[delayed]
    return tissue.with_(e1=e1, e2=e1 * r2, e3=e1 * r3)


def _lesion_tissue(lesion: Lesion, rng: np.random.Generator) -> Tissue:
    f = lesion.fields
    adc = (
        rng.normal(850, 70)
        if f.get("diffusion") == "diffusion_restricted"
        else rng.normal(1600, 120)
    )
    base = Tissue(t2=T2_SIGNAL[f["t2_signal"]], s0=0.65, adc=float(adc), t1=0.30)
    return _enhancement(base, f["kinetics_initial"], f["kinetics_delayed"], rng)


def _patterned(
    tissue: Tissue,
    pattern: str,
    rng: np.random.Generator,
    scale_mm: float = 4.0,
    texture_scale: float = 1.0,
):
    """A tissue function whose enhancement varies in space by the descriptor's pattern
    (`texture_scale`: the canvas's voxels per low-resolution voxel)."""
    vec = tissue.vector()
    grid_scale = scale_mm

    def values(points: np.ndarray, dist: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(vec[:, None, None, None], (len(vec), *dist.shape)).copy()
        if pattern in ("enhancement_homogeneous", "nme_homogeneous"):
            return out
        if pattern in ("enhancement_rim",):
            depth_in = np.clip(-dist / 3.5, 0.0, 1.0)  # 0 at the edge, 1 deeper than 3.5 mm
            weight = 1.05 - 0.85 * depth_in
            out[4:] *= weight[None]
            out[0] = np.where(
                depth_in > 0.8, np.maximum(out[0], 0.75), out[0]
            )  # necrotic core is T2-bright
            return out
        noise = smooth_noise(rng, dist.shape, scale=max(1.5, grid_scale / 2.6) * texture_scale)
        if pattern in ("enhancement_heterogeneous", "nme_heterogeneous"):
            weight = 0.35 + 1.0 * noise
        elif pattern == "nme_clumped":
            weight = np.where(noise > 0.55, 1.2, 0.25)
        elif pattern == "nme_clustered_ring":
            weight = np.where(np.abs(noise - 0.5) < 0.09, 1.3, 0.2)
        elif pattern == "enhancement_dark_septations":
            c = points.mean(axis=(0, 1, 2))
            d1 = np.abs((points - c) @ np.array([0.8, 0.6, 0.0], dtype=np.float32))
            d2 = np.abs((points - c) @ np.array([0.0, 0.6, -0.8], dtype=np.float32))
            septum = (np.minimum(d1, d2) < 1.2).astype(np.float32)
            weight = 1.0 - 0.9 * septum
            out[0] = out[0] * (1.0 - 0.7 * septum)
        else:
            weight = np.ones_like(noise)
        out[4:] *= weight[None]
        return out

    return values


# Shape and margin at the scale real lesions draw them. The definitions are the BI-RADS
# MRI lexicon's (ACR BI-RADS Atlas, 5th ed., 2013): an irregular shape is neither round
# nor oval; an irregular margin is uneven or jagged; a spiculated margin has lines
# radiating from the mass. Real lobulations and spicules span millimetres to
# centimetres; the scales below are chosen within that range so that a 0.9 mm grid
# resolves them (at least three voxels per wavelength). They are the phantom's choice,
# not measured from patients:
IRREGULAR_LOBES = (3, 6)  # lobes merged onto a smaller core
LOBE_OFFSET = (0.35, 0.6)  # lobe centres, in radii from the core's centre
LOBE_SIZE = (0.3, 0.5)  # lobe semi-axes, in radii
MARGIN_ROUGHNESS_MM = (1.0, 1.6)  # irregular margin: std of the surface's displacement
MARGIN_WAVELENGTH_MM = (2.5, 6.0)  # ... over wavelengths a 0.9 mm grid resolves
SPICULE_LENGTH_MM = (5.0, 15.0)  # beyond the margin
SPICULE_RADIUS_MM = (0.8, 1.2)


def _irregular_body(lesion: Lesion, rng: np.random.Generator):
    """A smaller core with lobes merged onto it at random angles: angular and lobulated."""
    r, c = lesion.radius, lesion.centre
    parts = [
        ellipsoid(
            c, (r * 0.65, r * rng.uniform(0.45, 0.65), r * rng.uniform(0.45, 0.65)), rotation(rng)
        )
    ]
    for _ in range(int(rng.integers(*IRREGULAR_LOBES))):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        centre = c + direction * r * rng.uniform(*LOBE_OFFSET)
        axes = r * rng.uniform(*LOBE_SIZE, size=3)
        parts.append(ellipsoid(centre, axes, rotation(rng)))
    sdf = smooth_union([p[0] for p in parts], k=max(1.0, 0.15 * r))
    bounds = (
        np.min([p[1][0] for p in parts], axis=0),
        np.max([p[1][1] for p in parts], axis=0),
    )
    return sdf, bounds


def _paint_cyst(canvas: Canvas, lesion: Lesion, rot: np.ndarray, rng: np.random.Generator) -> None:
    """A simple cyst: a smooth, slightly flattened ellipsoid of fluid (either protocol)."""
    r = lesion.radius
    axes = (r, r * rng.uniform(0.7, 0.95), r * rng.uniform(0.7, 0.95))
    sdf, bounds, size = blob(lesion.centre, axes, rot, Harmonics(rng, 0.0))
    canvas.paint(sdf, bounds, CYST, label=lesion.label, blur=0.8)
    lesion.size_mm = size


def _paint_spicules(
    canvas: Canvas,
    centre: np.ndarray,
    tissue: Tissue,
    rng: np.random.Generator,
    start_mm: float,
    end_mm: Callable[[], float],
    radius_mm: tuple[float, float],
) -> None:
    """8-14 enhancing strands from `start_mm` off the centre out to `end_mm()` (drawn per
    strand), each as thick as a draw from `radius_mm`."""
    for _ in range(int(rng.integers(8, 15))):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        start = centre + direction * start_mm
        end = centre + direction * end_mm()
        s_sdf, s_bounds = capsule(start, end, radius=float(rng.uniform(*radius_mm)))
        canvas.paint(s_sdf, s_bounds, tissue, blur=1.0)


def _paint_body(
    canvas: Canvas,
    lesion: Lesion,
    sdf,
    bounds,
    tissue: Tissue,
    rng: np.random.Generator,
    blur: float,
) -> None:
    """The mass itself, labelled, enhancing in its internal pattern."""
    pattern = lesion.fields.get("internal_enhancement", "enhancement_homogeneous")
    canvas.paint(
        sdf,
        bounds,
        _patterned(tissue, pattern, rng, texture_scale=canvas.texture_scale),
        label=lesion.label,
        blur=blur,
    )


def _paint_mass(canvas: Canvas, lesion: Lesion, rng: np.random.Generator) -> None:
    f = lesion.fields
    r = lesion.radius
    rot = rotation(rng)
    if f["type"] == "breast_cyst":
        _paint_cyst(canvas, lesion, rot, rng)
        return
    tissue = _lesion_tissue(lesion, rng)
    if f["type"] == "focus":
        sdf, bounds, size = blob(lesion.centre, (r, r, r), rot, Harmonics(rng, 0.0))
        canvas.paint(sdf, bounds, tissue, label=lesion.label)
        lesion.size_mm = size
        return
    shape = f.get("shape", "shape_round")
    margin = f.get("margin", "margin_circumscribed")
    if shape == "shape_irregular":
        sdf, bounds = _irregular_body(lesion, rng)
    else:
        if shape == "shape_round":
            axes = (r, r * rng.uniform(0.92, 1.0), r * rng.uniform(0.92, 1.0))
        else:  # oval, which may have two or three gentle undulations
            axes = (r, r * rng.uniform(0.55, 0.75), r * rng.uniform(0.6, 0.8))
        sdf, bounds, _ = blob(
            lesion.centre, axes, rot, Harmonics(rng, 0.08, n_terms=3, max_freq=1.5)
        )
    blur = 1.0
    if margin == "margin_irregular":
        waves = SurfaceWaves(rng, rng.uniform(*MARGIN_ROUGHNESS_MM), MARGIN_WAVELENGTH_MM)
        sdf = roughen(sdf, waves)
        bounds = (bounds[0] - 3 * waves.amplitude, bounds[1] + 3 * waves.amplitude)
        blur = 1.8  # and indistinct
    if margin == "margin_spiculated":
        _paint_spicules(
            canvas, lesion.centre, tissue, rng, r * 0.6,
            lambda: r + rng.uniform(*SPICULE_LENGTH_MM), SPICULE_RADIUS_MM,
        )  # fmt: skip
    _paint_body(canvas, lesion, sdf, bounds, tissue, rng, blur)
    lesion.size_mm = longest_diameter(sdf, bounds)


def _paint_mass_low_resolution(canvas: Canvas, lesion: Lesion, rng: np.random.Generator) -> None:
    """The drawing the bundled breast model was trained on (relative harmonics, short
    spicules), kept byte for byte for the low-resolution protocol until that model is
    retrained on clinical phantoms (issue 37)."""
    f = lesion.fields
    r = lesion.radius
    rot = rotation(rng)
    if f["type"] == "breast_cyst":
        _paint_cyst(canvas, lesion, rot, rng)
        return
    shape = f.get("shape", "shape_round")
    margin = f.get("margin", "margin_circumscribed")
    if shape == "shape_round":
        axes, low_freq = (r, r * rng.uniform(0.92, 1.0), r * rng.uniform(0.92, 1.0)), 0.0
    elif shape == "shape_oval":
        axes, low_freq = (r, r * rng.uniform(0.55, 0.75), r * rng.uniform(0.6, 0.8)), 0.0
    else:
        axes, low_freq = (r, r * rng.uniform(0.7, 0.95), r * rng.uniform(0.7, 0.95)), 0.35
    modulation = Harmonics(rng, low_freq, n_terms=6, max_freq=2.5)
    blur = 1.0
    if margin == "margin_irregular":
        fine = Harmonics(rng, 0.16, n_terms=10, max_freq=7.0)
        coarse = modulation
        modulation = _combine(coarse, fine)
        blur = 1.8
    tissue = _lesion_tissue(lesion, rng)
    if f["type"] == "focus":
        axes = (r, r, r)
        modulation = Harmonics(rng, 0.0)
    sdf, bounds, size = blob(lesion.centre, axes, rot, modulation)
    if margin == "margin_spiculated":
        _paint_spicules(
            canvas, lesion.centre, tissue, rng, r * 0.7,
            lambda: r * rng.uniform(1.7, 2.4), (0.9, 1.3),
        )  # fmt: skip
    _paint_body(canvas, lesion, sdf, bounds, tissue, rng, blur)
    lesion.size_mm = size


def _combine(a: Harmonics, b: Harmonics):
    class Both:
        amp = np.concatenate([a.amp, b.amp])

        def __call__(self, u: np.ndarray) -> np.ndarray:
            return a(u) + b(u) - 1.0

    return Both()


def _paint_nme(canvas: Canvas, lesion: Lesion, case: BreastCase, rng: np.random.Generator) -> None:
    f = lesion.fields
    tissue = _lesion_tissue(lesion, rng)
    nipple = _breast_centre(f["laterality"]) + np.array(
        [0.0, case.breast_depth, 0.0], dtype=np.float32
    )
    dist = f["nme_distribution"]
    r = lesion.radius
    if dist == "nme_linear":
        towards = (nipple - lesion.centre) / np.linalg.norm(nipple - lesion.centre)
        length = rng.uniform(25, 40)
        a = lesion.centre - towards * length / 2
        b = lesion.centre + towards * length / 2
        sdf, bounds = capsule(a, b, radius=2.5)
        size = float(length + 5.0)
    elif dist == "nme_segmental":
        axis = (lesion.centre - nipple) / np.linalg.norm(lesion.centre - nipple)
        length = float(np.linalg.norm(lesion.centre - nipple) + r)
        half_angle = np.deg2rad(rng.uniform(14, 20))

        def cone(p: np.ndarray, apex=nipple, axis=axis, length=length, ha=half_angle) -> np.ndarray:
            v = p - apex
            along = v @ axis
            across = np.linalg.norm(v - along[..., None] * axis, axis=-1)
            lateral = across * np.cos(ha) - along * np.sin(ha)
            return np.maximum(np.maximum(lateral, -along), along - length)

        sdf = cone
        lo = np.minimum(nipple, lesion.centre + axis * r) - r - 20
        hi = np.maximum(nipple, lesion.centre + axis * r) + r + 20
        bounds = (lo, hi)
        size = length
    else:  # focal (smaller) or regional (larger) geographic area
        scale = 0.8 if dist == "nme_focal" else 1.6
        axes = (r * scale, r * scale * rng.uniform(0.6, 0.9), r * scale * rng.uniform(0.6, 0.9))
        sdf, bounds, size = blob(
            lesion.centre, axes, rotation(rng), Harmonics(rng, 0.3, max_freq=3.0)
        )
    canvas.paint(
        sdf,
        bounds,
        _patterned(tissue, f["nme_pattern"], rng, 3.0, canvas.texture_scale),
        label=lesion.label,
        blur=1.5,
    )
    lesion.size_mm = float(size)


def _axillary_node_centre(drawn: np.ndarray) -> np.ndarray:
    """Where a clinical phantom's axillary node lies: in the axillary fat between the
    pectoralis and the torso's surface, lateral to the breast's base, as level I nodes do.

    The low-resolution protocol keeps its legacy nodes (`drawn`: at the breast's base,
    where the breast, painted after them, covered most of each node with fat: on 120
    clinical development phantoms of seed 3131 the enlarged node of 7 studies whose truth
    states axillary adenopathy was a sliver or nothing). The draw is mapped, not redrawn,
    so every later draw of the phantom is unchanged."""
    side = float(np.sign(drawn[0]))
    x = 98.0 + (abs(float(drawn[0])) - 100.0) * 0.6  # 98-104 mm from the midline
    muscle_front = MUSCLE_CENTRE[1] + MUSCLE_AXES[1] * np.sqrt(
        max(1.0 - (x / MUSCLE_AXES[0]) ** 2, 0.0)
    )
    torso_front = TORSO_CENTRE[1] + TORSO_AXES[1] * np.sqrt(
        max(1.0 - (x / TORSO_AXES[0]) ** 2, 0.0)
    )
    y = (muscle_front + torso_front) / 2 + (float(drawn[1]) - 2.5) * 0.4  # +-3 mm
    return np.array([side * x, y, drawn[2]], dtype=np.float32)


def render(case: BreastCase, acq: Acquisition, rng: np.random.Generator) -> Canvas:
    """Paint the anatomy and the lesions onto the acquisition's grid."""
    canvas = Canvas(acq.grid(), AIR)
    canvas.texture_scale = acq.texture_scale
    long = 400.0
    torso, torso_b = ellipsoid(TORSO_CENTRE, (*TORSO_AXES, long))
    canvas.paint(torso, torso_b, FAT, extruded=True)
    muscle, muscle_b = ellipsoid(MUSCLE_CENTRE, (MUSCLE_AXES[0], MUSCLE_AXES[1], long))
    canvas.paint(muscle, muscle_b, MUSCLE, extruded=True)
    chest, chest_b = ellipsoid((0, -80, 0), (95, 56, long))
    canvas.paint(chest, chest_b, LUNG, extruded=True)
    heart, heart_b = ellipsoid((-15, -62, -10), (45, 38, 50))
    canvas.paint(heart, heart_b, BLOOD)
    # Axillae: normal nodes with a fatty hilum; enlarged round nodes on the side of adenopathy.
    for side in ("right", "left"):
        sx = 1.0 if side == "right" else -1.0
        for k in range(2):
            centre = np.array(
                [sx * rng.uniform(100, 110), rng.uniform(-5, 10), 25.0 + 12 * k], dtype=np.float32
            )
            if acq.protocol == "clinical":
                centre = _axillary_node_centre(centre)
            if case.adenopathy_side == side and k == 0:
                r = rng.uniform(7.5, 11)
                n_sdf, n_b = ellipsoid(centre, (r, r * 0.9, r * 0.95))
                canvas.paint(n_sdf, n_b, NODE_METASTATIC)
            else:
                n_sdf, n_b = ellipsoid(centre, (4.5, 2.8, 3.2))
                canvas.paint(n_sdf, n_b, NODE)
                h_sdf, h_b = ellipsoid(centre, (2.0, 1.2, 1.5))
                canvas.paint(h_sdf, h_b, FAT)
    fgt_fraction = FGT_FRACTION[case.fields["fgt_amount"]]
    bpe = BPE_LEVEL[case.fields["bpe_level"]]
    noise = smooth_noise(rng, canvas.grid.shape, scale=4.0 * canvas.texture_scale)
    for side in ("right", "left"):
        base = _breast_centre(side)
        axes = (BREAST_AXES[0], case.breast_depth, BREAST_AXES[1])
        b_sdf, b_bounds = ellipsoid(base, axes)
        breast_sdf = intersect(b_sdf, half_space(base, (0, 1, 0)))
        frac = canvas.paint(breast_sdf, b_bounds, FAT)
        if frac is None:
            continue
        box = canvas.grid.box_of(*b_bounds)
        inside = frac > 0.5
        pts = canvas.grid.points(box)
        # FGT: smooth texture thresholded to the composition's volume fraction, denser centrally.
        q = (pts - base) / np.asarray(axes, np.float32)
        centrality = 1.0 - np.clip(
            np.linalg.norm(q * np.array([1.0, 0.6, 1.0], np.float32), axis=-1), 0, 1
        )
        texture = noise[box] * 0.6 + centrality * 0.4
        threshold = np.quantile(texture[inside], 1.0 - fgt_fraction) if inside.any() else 1.0
        fgt_frac = np.clip((texture - threshold) * 12.0 + 0.5, 0.0, 1.0) * inside
        side_bpe = bpe * (2.2 if case.bpe_asymmetric_side == side else 1.0)
        fgt = FGT.with_(e1=side_bpe * 0.6, e2=side_bpe * 0.85, e3=side_bpe)
        region = canvas.props[(slice(None), *box)]
        region += fgt_frac[None] * (fgt.vector()[:, None, None, None] - region)
        thickness = rng.uniform(5.0, 7.0) if case.fields["skin_thickening"] else 1.6
        skin_tissue = THICK_SKIN if case.fields["skin_thickening"] else SKIN
        canvas.paint(
            intersect(shell(b_sdf, thickness), half_space(base, (0, 1, 0))),
            b_bounds,
            skin_tissue,
            blur=0.7,
        )
        tip = base + np.array([0.0, case.breast_depth, 0.0], dtype=np.float32)
        if nipple_retracted(case, side):
            notch, notch_b = ellipsoid(tip, (6.0, 7.0, 6.0))
            canvas.paint(notch, notch_b, AIR)
        else:
            stalk = np.array([0.0, NIPPLE_LENGTH_MM, 0.0], dtype=np.float32)
            nip, nip_b = capsule(tip, tip + stalk, radius=NIPPLE_RADIUS_MM)
            canvas.paint(nip, nip_b, SKIN)
    placed: list[Lesion] = []
    for lesion in case.lesions:
        if not lesion.placed and not place_lesion(rng, lesion, case, placed, acq.protocol):
            continue  # nowhere it fits: not painted, so not part of the truth
        placed.append(lesion)
        if lesion.fields["type"] == "non_mass_enhancement":
            _paint_nme(canvas, lesion, case, rng)
        else:
            paint = _paint_mass if acq.protocol == "clinical" else _paint_mass_low_resolution
            paint(canvas, lesion, rng)
    return canvas
