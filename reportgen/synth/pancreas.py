"""Pancreas CT phantoms: an abdomen in Hounsfield units at three contrast phases, with a
ductal adenocarcinoma (or none, or a cystic lesion) whose vessel contact is measured
from the painted geometry, never asserted.

World coordinates are RAS millimetres (x to the patient's left, y anterior, z cranial),
the origin near the pancreatic neck. Anatomy, each organ jittered per study:
- body wall (fat, muscle), spine, liver, spleen, kidneys, duodenal C-loop, bowel;
- aorta, celiac axis, common hepatic and splenic arteries, superior mesenteric artery
  (SMA); superior mesenteric vein (SMV), splenic vein, main portal vein (PV), IVC;
- pancreas (head with uncinate process right of the SMV, neck in front of the
  SMV/portal confluence, body over the SMA, tail to the splenic hilum), its main duct
  and the common bile duct (CBD) through the head to the papilla.
A ductal adenocarcinoma is hypoattenuating in the pancreatic phase (or, in a few,
isoattenuating: SAR/APA 2014), cuts the duct off with upstream dilatation, blocks the
CBD from the head, and is placed against a vessel at a drawn depth, so that every NCCN
category occurs; its contact with each of the five template vessels is then measured in
degrees around the vessel's circumference (`contact_degrees`): none, 180 or less, more
than 180, or occlusion (a vein whose lumen the tumour replaces over a segment). Distant
disease: liver metastases, peritoneal nodules with ascites, para-aortic nodes; regional
nodes beside the pancreas. Attenuation values are typical published ones for each
phase (pancreatic phase about 40-50 s, portal venous about 65-70 s after injection).

Mask labels: organs and vessels by `ANATOMY_LABELS`; finding k (the tumour or a cyst)
is FINDING_LABEL + k, so outlines of organs, vessels and lesions are all learnable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from reportgen.measure.pancreas import pancreas_part
from reportgen.synth.scene import (
    SDF,
    Canvas,
    Grid,
    Harmonics,
    blob,
    capsule,
    ellipsoid,
    longest_diameter,
    rotation,
)

# the canvas's properties, in this order, and the phases every phantom is written at: a
# pancreatic protocol CT's two enhanced phases and the non-contrast one many protocols
# begin with (so a reader learns what a plain CT shows, and a bench can drop phases)
PHASES = ("CT_NC", "CT_PANC", "CT_PV")


@dataclass(frozen=True)
class CTTissue:
    """Attenuation (HU) at each phase of `PHASES`."""

    nc: float
    panc: float
    pv: float

    def vector(self) -> np.ndarray:
        return np.array([self.nc, self.panc, self.pv], dtype=np.float32)


AIR = CTTissue(-1000, -1000, -1000)
FAT = CTTissue(-100, -100, -100)
MESENTERY = CTTissue(-85, -80, -80)
MUSCLE = CTTissue(50, 60, 65)
BONE = CTTissue(350, 355, 360)
CORTEX = CTTissue(750, 750, 750)
LIVER = CTTissue(58, 78, 115)
SPLEEN = CTTissue(48, 125, 120)
KIDNEY = CTTissue(35, 175, 165)
PANCREAS = CTTissue(45, 125, 100)
ARTERY = CTTissue(42, 290, 165)
VEIN = CTTissue(42, 120, 180)
IVC = CTTissue(42, 75, 150)
FLUID = CTTissue(8, 10, 12)
BOWEL_WALL = CTTissue(40, 95, 100)
NODE = CTTissue(40, 70, 85)
METASTASIS = CTTissue(42, 55, 62)

SPLEEN_TILT = rotation(np.random.default_rng(1), 20.0)  # one fixed tilt, every study
ANATOMY_LABELS = {
    "pancreas": 1,
    "liver": 2,
    "spleen": 3,
    "kidney": 4,
    "aorta": 5,
    "celiac_axis": 6,
    "common_hepatic_artery": 7,
    "superior_mesenteric_artery": 8,
    "superior_mesenteric_vein": 9,
    "portal_vein": 10,
    "splenic_vein": 11,
    "ivc": 12,
    "pancreatic_duct": 13,
    "common_bile_duct": 14,
    "duodenum": 15,
    "liver_metastasis": 16,
    "lymph_node": 17,
    "peritoneal_nodule": 18,
    "splenic_artery": 19,
    "ascites": 20,
}
FINDING_LABEL = 30  # finding k has mask label FINDING_LABEL + k
# the template's vessel fields, the vessel each names, and whether it is a vein
CONTACT_VESSELS = {
    "sma_contact": ("superior_mesenteric_artery", False),
    "celiac_contact": ("celiac_axis", False),
    "cha_contact": ("common_hepatic_artery", False),
    "smv_contact": ("superior_mesenteric_vein", True),
    "pv_contact": ("portal_vein", True),
}
CONTACT_MIN_DEG = 10.0  # less than this of the circumference is no contact (a touch)


@dataclass
class Tube:
    """A vessel or duct: a polyline with a radius (mm)."""

    name: str
    points: np.ndarray  # (n, 3) world mm
    radius: float

    def sdf(self) -> tuple[SDF, tuple[np.ndarray, np.ndarray]]:
        parts = [capsule(a, b, self.radius) for a, b in pairwise(self.points)]

        def sdf(p: np.ndarray) -> np.ndarray:
            return np.min(np.stack([s(p) for s, _ in parts]), axis=0)

        lo = np.min([b[0] for _, b in parts], axis=0)
        hi = np.max([b[1] for _, b in parts], axis=0)
        return sdf, (lo, hi)

    def samples(self, step_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Points along the centreline every `step_mm`, with their unit tangents."""
        points, tangents = [], []
        for a, b in pairwise(self.points):
            length = float(np.linalg.norm(b - a))
            n = max(1, int(length / step_mm))
            t = (b - a) / max(length, 1e-6)
            for k in range(n):
                points.append(a + (b - a) * k / n)
                tangents.append(t)
        return np.asarray(points, np.float32), np.asarray(tangents, np.float32)


@dataclass
class Lesion:
    kind: str  # "pdac" | "cyst"
    label: int
    sdf: SDF
    bounds: tuple[np.ndarray, np.ndarray]
    tissue: CTTissue
    fields: dict
    size_mm: float
    centre: np.ndarray
    contact_deg: dict[str, float] = field(default_factory=dict)
    occluded: str | None = None  # the vein whose lumen the tumour replaces
    bite: tuple[np.ndarray, float] | None = None  # (centre, radius): an indented vein


@dataclass
class PancreasCase:
    fields: dict
    lesions: list[Lesion]
    vessels: dict[str, Tube]
    ducts: dict[str, Tube]
    pancreas: tuple[SDF, tuple[np.ndarray, np.ndarray]]
    shift_mm: np.ndarray
    scale: float
    extras: list[tuple[str, np.ndarray, float]]  # (label name, centre, radius): mets, nodes
    ascites: bool
    details: dict = field(default_factory=dict)


def _jitter(rng: np.random.Generator, points, amount: float = 3.0) -> np.ndarray:
    pts = np.asarray(points, np.float32)
    return pts + rng.normal(0, amount, size=pts.shape).astype(np.float32)


def _anatomy(rng: np.random.Generator) -> tuple[dict[str, Tube], dict[str, np.ndarray]]:
    """The vessels and the pancreas's landmarks of one study (mm, before the study's
    shift and scale)."""
    aorta_x = float(rng.uniform(8, 16))
    ca_z, sma_z = float(rng.uniform(32, 40)), float(rng.uniform(16, 24))
    confluence = np.array([rng.uniform(-8, -2), rng.uniform(2, 8), rng.uniform(4, 12)])
    vessels = {
        "aorta": Tube("aorta", np.array([[aorta_x, -32, -80.0], [aorta_x, -30, 80.0]]), 11.0),
        "ivc": Tube("ivc", np.array([[-22, -30, -80.0], [-24, -28, 80.0]]), 11.0),
        "celiac_axis": Tube(
            "celiac_axis", _jitter(rng, [[aorta_x, -20, ca_z], [aorta_x, -4, ca_z + 2]], 1.0), 3.5
        ),
        "common_hepatic_artery": Tube(
            "common_hepatic_artery",
            _jitter(rng, [[aorta_x, -4, ca_z + 2], [-12, 2, ca_z + 1], [-38, 4, ca_z + 6]], 1.5),
            2.8,
        ),
        "splenic_artery": Tube(
            "splenic_artery",
            _jitter(rng, [[aorta_x, -4, ca_z + 2], [45, -6, ca_z + 4], [88, -16, ca_z + 8]], 1.5),
            2.6,
        ),
        "superior_mesenteric_artery": Tube(
            "superior_mesenteric_artery",
            _jitter(
                rng,
                [
                    [aorta_x, -20, sma_z],
                    [aorta_x, -6, sma_z - 6],
                    [aorta_x - 2, 2, -20],
                    [4, 6, -75],
                ],
                1.0,
            ),
            3.6,
        ),
        "superior_mesenteric_vein": Tube(
            "superior_mesenteric_vein",
            _jitter(rng, [[-8, 12, -75], [-7, 10, -20], list(confluence)], 1.0),
            5.0,
        ),
        "portal_vein": Tube(
            "portal_vein",
            _jitter(rng, [list(confluence), [-25, 3, 28], [-48, 2, 42]], 1.0),
            6.5,
        ),
        "splenic_vein": Tube(
            "splenic_vein",
            _jitter(rng, [list(confluence), [30, -6, 18], [82, -14, 30]], 1.5),
            4.2,
        ),
    }
    landmarks = {
        "head": np.array([-22, 10, -12.0]) + rng.normal(0, 2, 3),
        "uncinate": np.array([0, -6, -26.0]) + rng.normal(0, 1.5, 3),  # behind the SMV
        "neck": confluence + np.array([2.0, 12.0, 2.0]),
        "body": np.array([14, 15, 18.0]) + rng.normal(0, 2, 3),  # over the SMA and aorta
        "tail": np.array([62, 2, 28.0]) + rng.normal(0, 2, 3),
        "tail_tip": np.array([82, -10, 32.0]) + rng.normal(0, 2, 3),  # at the splenic hilum
        "papilla": np.array([-34, 4, -24.0]) + rng.normal(0, 1.5, 3),
        "hilum": np.array([-45, 2, 44.0]),
    }
    return vessels, landmarks


def _pancreas_sdf(landmarks: dict[str, np.ndarray]) -> tuple[SDF, tuple[np.ndarray, np.ndarray]]:
    """Head (an ellipsoid with its uncinate process), neck, body and tail as one organ."""
    from reportgen.synth.scene import smooth_union

    head, head_bounds = ellipsoid(landmarks["head"], (15, 12, 22))
    uncinate, unc_bounds = capsule(landmarks["head"], landmarks["uncinate"], 7.0)
    neck, neck_bounds = capsule(landmarks["head"], landmarks["neck"], 9.0)
    body, body_bounds = capsule(landmarks["neck"], landmarks["body"], 9.5)
    tail, tail_bounds = capsule(landmarks["body"], landmarks["tail"], 8.5)
    tip, tip_bounds = capsule(landmarks["tail"], landmarks["tail_tip"], 7.0)
    sdf = smooth_union([head, uncinate, neck, body, tail, tip], k=4.0)
    parts = [head_bounds, unc_bounds, neck_bounds, body_bounds, tail_bounds, tip_bounds]
    lo = np.min([b[0] for b in parts], axis=0) - 4
    hi = np.max([b[1] for b in parts], axis=0) + 4
    return sdf, (lo, hi)


def _ducts(landmarks: dict[str, np.ndarray], duct_mm: float, cbd_mm: float) -> dict[str, Tube]:
    return {
        "pancreatic_duct": Tube(
            "pancreatic_duct",
            np.array(
                [landmarks[k] for k in ("tail_tip", "tail", "body", "neck", "head", "papilla")]
            ),
            duct_mm / 2,
        ),
        "common_bile_duct": Tube(
            "common_bile_duct",
            np.array(
                [
                    landmarks["hilum"],
                    [-40, -2, 20],
                    landmarks["head"] + [-8, -6, -4],
                    landmarks["papilla"],
                ]
            ),
            cbd_mm / 2,
        ),
    }


def painted_over(vessels: dict[str, Tube], name: str) -> list[SDF]:
    """The vessels `render` paints after `name` (in `vessels`' order), whose label covers
    its centreline where the two meet: the SMV's last stretch before the confluence lies
    in the portal vein's, and the portal vein's first in the splenic vein's."""
    names = list(vessels)
    return [vessels[other].sdf()[0] for other in names[names.index(name) + 1 :]]


def contact_degrees(
    tube: Tube, tumour: SDF, margin_mm: float = 0.75, covered_by: list[SDF] | None = None
) -> float:
    """The largest arc of the vessel's circumference (degrees) the tumour touches, over
    cross-sections every millimetre: points `margin_mm` outside the vessel wall inside the
    tumour, as a radiologist reads contact on the cross-section where it is greatest.
    Cross-sections whose centre lies in a vessel of `covered_by` (`painted_over`) are
    that vessel's, as the image and the labels show it: the SMV's tube runs on 6.5 mm
    into the portal vein's, and a tumour touching the portal vein there had been read
    as touching the SMV as well (development phantoms: 7 of 75 SMV contacts of 15-135
    degrees lay wholly there, more than 2 mm from any voxel painted SMV)."""
    points, tangents = tube.samples(1.0)
    for other in covered_by or ():
        shown = other(points) >= 0
        points, tangents = points[shown], tangents[shown]
    helper = np.where(np.abs(tangents[:, 2:3]) < 0.9, [[0, 0, 1.0]], [[1.0, 0, 0]])
    u = np.cross(tangents, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(tangents, u)
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ring = (
        points[:, None, :]
        + (tube.radius + margin_mm)
        * (
            np.cos(angles)[None, :, None] * u[:, None, :]
            + np.sin(angles)[None, :, None] * v[:, None, :]
        )
    ).astype(np.float32)
    inside = tumour(ring.reshape(-1, 3)).reshape(len(points), len(angles)) < 0
    return float(inside.mean(axis=1).max() * 360.0) if len(points) else 0.0


def contact_category(field_id: str, degrees: float, occluded: bool) -> str:
    """The template's value for one vessel's contact."""
    prefix = field_id.removesuffix("_contact")
    if occluded:
        return f"{prefix}_contact_occlusion"
    if degrees < CONTACT_MIN_DEG:
        return f"{prefix}_contact_none"
    return f"{prefix}_contact_le180" if degrees <= 180.0 else f"{prefix}_contact_gt180"


# where a tumour of each location grows, and the vessels it is drawn against
LOCATION_WEIGHTS = {
    "pancreas_head": 0.55,
    "pancreas_neck": 0.1,
    "pancreas_body": 0.22,
    "pancreas_tail": 0.13,
}
LOCATION_LANDMARK = {
    "pancreas_head": "head",
    "pancreas_neck": "neck",
    "pancreas_body": "body",
    "pancreas_tail": "tail",
}
TARGET_VESSELS = {
    "pancreas_head": (
        "superior_mesenteric_vein",
        "portal_vein",
        "superior_mesenteric_artery",
        "common_hepatic_artery",
    ),
    "pancreas_neck": (
        "superior_mesenteric_vein",
        "portal_vein",
        "superior_mesenteric_artery",
        "common_hepatic_artery",
    ),
    "pancreas_body": (
        "superior_mesenteric_artery",
        "celiac_axis",
        "common_hepatic_artery",
        "splenic_vein",
    ),
    "pancreas_tail": ("splenic_vein",),
}


def location_of(centre: np.ndarray, vessels: dict[str, Tube]) -> str:
    """The part of the pancreas a lesion centred at `centre` is in, by the landmarks
    (`reportgen.measure.pancreas.pancreas_part`): the SMV where it passes the lesion's
    level, the aorta's left border."""
    smv = vessels["superior_mesenteric_vein"]
    points, _ = smv.samples(1.0)
    level = points[np.argmin(np.abs(points[:, 2] - centre[2]))]
    aorta = vessels["aorta"]
    aorta_left = float(np.max(aorta.points[:, 0])) + aorta.radius
    return pancreas_part(float(centre[0]), float(level[0]), smv.radius, aorta_left)


OCCLUDED_DEPTH_MM = 1.5  # an occluded vein's axis runs this deep in the tumour where cut


def _cut_axis(tube: Tube, tumour: SDF) -> np.ndarray:
    """Which of the vein's axis samples (every millimetre) the tumour occludes."""
    samples, _ = tube.samples(1.0)
    return tumour(samples) < -OCCLUDED_DEPTH_MM


def _occluded(tube: Tube, tumour: SDF) -> tuple[SDF, tuple[np.ndarray, np.ndarray]]:
    """The vein with no lumen across every cross-section whose axis runs inside the
    tumour: an occlusion leaves no channel, so the outline is cut in two (removing only
    the lumen deep in the tumour had left a crescent of patent vein beside it)."""
    from scipy.spatial import cKDTree

    sdf, bounds = tube.sdf()
    samples, _ = tube.samples(1.0)
    cut = _cut_axis(tube, tumour)
    nearest = cKDTree(samples)

    def shape(points: np.ndarray) -> np.ndarray:
        inside = sdf(points)
        _, index = nearest.query(points)
        return np.where(cut[index], np.maximum(inside, 1.0), inside)

    return shape, bounds


def _closest_on(tube: Tube, point: np.ndarray) -> np.ndarray:
    samples, _ = tube.samples(1.0)
    return samples[np.argmin(np.linalg.norm(samples - point, axis=1))]


# a ductal adenocarcinoma arises in the gland: its centre lies at most this share of its
# radius outside the gland's surface, so a good part of it is pancreas (pulled toward a
# distant vessel, 3 in 20 phantom tumours had come loose from the gland)
MAX_OUTSIDE_GLAND = 0.3


def _place_tumour(
    rng: np.random.Generator,
    location: str,
    landmarks: dict,
    vessels: dict[str, Tube],
    gland: SDF,
) -> tuple[np.ndarray, float]:
    """A tumour centre and radius: in its part of the pancreas, and, for most, pulled
    toward one of the vessels that part lies on, to a drawn depth (clear of it, touching,
    or around it), but never off the gland (`MAX_OUTSIDE_GLAND`): pulled too far, it is
    moved back toward where it started until it is in the gland."""
    radius = float(rng.uniform(7, 22))
    home = landmarks[LOCATION_LANDMARK[location]] + rng.normal(0, 2.5, 3)
    centre = home
    if rng.random() < 0.75:
        target = vessels[str(rng.choice(TARGET_VESSELS[location]))]
        near = _closest_on(target, home)
        direction = home - near
        direction /= max(float(np.linalg.norm(direction)), 1e-6)
        # distance from the vessel axis: beyond radius + vessel radius is clear of it;
        # below radius - vessel radius the vessel is inside the tumour
        depth = float(rng.uniform(-0.6, 1.15))  # < 0: a gap; 1: the vessel well inside
        distance = radius + target.radius + 3.0 - depth * (2.0 * target.radius + radius * 0.8)
        pulled = near + direction * max(distance, 0.0)
        steps = pulled + np.linspace(0.0, 1.0, 21)[:, None] * (home - pulled)
        inside = gland(steps) <= MAX_OUTSIDE_GLAND * radius
        centre = steps[int(np.argmax(inside))] if inside.any() else home
    return centre.astype(np.float32), radius


def sample_case(rng: np.random.Generator, tumour_fraction: float = 0.6) -> PancreasCase:
    """One study's truth: anatomy, lesions, extrapancreatic findings."""
    vessels, landmarks = _anatomy(rng)
    gland = _pancreas_sdf(landmarks)
    draw = rng.random()
    has_pdac = draw < tumour_fraction
    has_cyst = (not has_pdac and draw < tumour_fraction + 0.18) or (
        has_pdac and rng.random() < 0.08
    )
    lesions: list[Lesion] = []
    duct_mm, cbd_mm = float(rng.uniform(1.8, 2.6)), float(rng.uniform(4.0, 6.0))
    fields = {
        "duct_dilatation": False,
        "biliary_dilatation": False,
        "liver_metastases": False,
        "peritoneal_nodules": False,
        "ascites": False,
        "regional_nodes": False,
        "nonregional_nodes": False,
    }
    extras: list[tuple[str, np.ndarray, float]] = []
    if has_pdac:
        aim = str(rng.choice(list(LOCATION_WEIGHTS), p=list(LOCATION_WEIGHTS.values())))
        centre, radius = _place_tumour(rng, aim, landmarks, vessels, gland[0])
        location = location_of(centre, vessels)  # where it is, by the landmarks, not the aim
        semi = radius * rng.uniform(0.8, 1.1, size=3)
        shape = Harmonics(rng, amplitude=0.18, n_terms=6, max_freq=3.0)
        sdf, bounds, longest = blob(centre, semi, rotation(rng), shape)
        iso = rng.random() < 0.08
        drop = float(rng.uniform(3, 10) if iso else rng.uniform(40, 70))
        tissue = CTTissue(
            PANCREAS.nc - 5, PANCREAS.panc - drop, PANCREAS.pv - (drop * 0.45 if not iso else 3)
        )
        cutoff = location != "pancreas_tail" and rng.random() < 0.9
        pdac = Lesion(
            "pdac",
            FINDING_LABEL + 1,
            sdf,
            bounds,
            tissue,
            {
                "type": "pancreatic_solid_mass",
                "location": location,
                "attenuation": "isoattenuating" if iso else "hypoattenuating",
                "duct_cutoff": bool(cutoff),
            },
            longest,
            centre,
        )
        for field_id, (vessel, _) in CONTACT_VESSELS.items():
            pdac.contact_deg[field_id] = contact_degrees(
                vessels[vessel], sdf, covered_by=painted_over(vessels, vessel)
            )
        for field_id, (vessel, vein) in CONTACT_VESSELS.items():
            degrees = pdac.contact_deg[field_id]
            if (
                vein
                and degrees >= 300
                and pdac.occluded is None
                and rng.random() < 0.5
                and _cut_axis(vessels[vessel], sdf).any()
            ):
                pdac.occluded = vessel
            occluded = pdac.occluded == vessel
            pdac.fields[field_id] = contact_category(field_id, degrees, occluded)
        le180_veins = [
            f for f in ("smv_contact", "pv_contact") if pdac.fields[f].endswith("_le180")
        ]
        if le180_veins:
            irregular = bool(rng.random() < 0.4)
            pdac.fields["vein_irregularity"] = irregular
            if irregular:
                tube = vessels[CONTACT_VESSELS[le180_veins[0]][0]]
                near = _closest_on(tube, centre)
                toward = centre - near
                toward /= max(float(np.linalg.norm(toward)), 1e-6)
                pdac.bite = (near + toward * tube.radius * 0.7, tube.radius * 0.6)
        lesions.append(pdac)
        if cutoff:
            fields["duct_dilatation"] = True
            duct_mm = float(rng.uniform(4.5, 7.0))
        if location == "pancreas_head" and rng.random() < 0.8:
            fields["biliary_dilatation"] = True
            cbd_mm = float(rng.uniform(11, 15))
        _distant(rng, fields, extras, vessels)
    if has_cyst:
        aim = str(rng.choice(list(LOCATION_WEIGHTS)))
        centre = landmarks[LOCATION_LANDMARK[aim]] + rng.normal(0, 3, 3)
        location = location_of(centre, vessels)
        semi = float(rng.uniform(4, 16)) * rng.uniform(0.85, 1.1, size=3)
        sdf, bounds = ellipsoid(centre, semi, rotation(rng))
        overlaps = any(les.sdf(centre[None])[0] < 4.0 for les in lesions)
        if not overlaps:
            lesions.append(
                Lesion(
                    "cyst",
                    FINDING_LABEL + len(lesions) + 1,
                    sdf,
                    bounds,
                    FLUID,
                    {"type": "pancreatic_cystic_lesion", "location": location},
                    longest_diameter(sdf, bounds),
                    centre.astype(np.float32),
                )
            )
    if not has_pdac and rng.random() < 0.03:
        fields["ascites"] = True
    for _ in range(int(rng.integers(1, 4))):  # small normal nodes: what is not suspicious
        _add_clear(
            rng, extras, vessels, "normal_node", [(-30, 40), (25, 45), (-70, -35)], (2.0, 3.0)
        )
    return PancreasCase(
        fields,
        lesions,
        vessels,
        _ducts(landmarks, duct_mm, cbd_mm),
        gland,
        shift_mm=rng.uniform(-8, 8, size=3).astype(np.float32),
        scale=float(rng.uniform(0.93, 1.07)),
        extras=extras,
        ascites=fields["ascites"],
        details={
            "duct_mm": round(duct_mm, 1),
            "cbd_mm": round(cbd_mm, 1),
            "contact_degrees": {
                k: round(v, 1) for les in lesions for k, v in les.contact_deg.items()
            },
        },
    )


# where nodes and metastases are drawn (x, y, z ranges in mm): regional stations beside
# the pancreas (common hepatic, posterior pancreaticoduodenal, SMA root), non-regional
# ones beside the aorta below the renal veins (left para-aortic, aortocaval)
REGIONAL_STATIONS = (
    [(-20, 0), (8, 16), (44, 50)],
    [(-42, -34), (-14, -6), (-24, -4)],
    [(24, 32), (-2, 6), (4, 10)],
)
NONREGIONAL_STATIONS = ([(32, 38), (-34, -26), (-75, -40)], [(-7, -3), (-28, -22), (-75, -40)])
LIVER_RANGE = [(-105, -45), (-30, 45), (45, 90)]


def _add_clear(
    rng: np.random.Generator,
    extras: list,
    vessels: dict[str, Tube],
    name: str,
    ranges: list[tuple[float, float]],
    radius_range: tuple[float, float],
    tries: int = 20,
) -> bool:
    """A round node or deposit somewhere in `ranges`, clear of every vessel by 1.5 mm."""
    radius = float(rng.uniform(*radius_range))
    for _ in range(tries):
        centre = np.array([rng.uniform(*r) for r in ranges], np.float32)
        clear = all(
            float(np.linalg.norm(_closest_on(tube, centre) - centre)) > tube.radius + radius + 1.5
            for tube in vessels.values()
        )
        if clear:
            extras.append((name, centre, radius))
            return True
    return False


def _distant(
    rng: np.random.Generator, fields: dict, extras: list, vessels: dict[str, Tube]
) -> None:
    """Extrapancreatic disease of a study with a ductal adenocarcinoma; a finding is true
    only where at least one deposit could be placed."""
    if rng.random() < 0.16:
        placed = [
            _add_clear(rng, extras, vessels, "liver_metastasis", LIVER_RANGE, (4.0, 11.0))
            for _ in range(int(rng.integers(1, 5)))
        ]
        fields["liver_metastases"] = any(placed)
    if rng.random() < 0.07:
        placed = [
            _add_clear(
                rng,
                extras,
                vessels,
                "peritoneal_nodule",
                [(-70, 70), (55, 78), (-60, 0)],
                (3.0, 6.0),
            )
            for _ in range(int(rng.integers(2, 5)))
        ]
        fields["peritoneal_nodules"] = any(placed)
        fields["ascites"] = bool(rng.random() < 0.7)
    elif rng.random() < 0.05:
        fields["ascites"] = True
    for key, chance, stations, sizes in (
        ("nonregional_nodes", 0.07, NONREGIONAL_STATIONS, (5.0, 7.0)),
        ("regional_nodes", 0.3, REGIONAL_STATIONS, (5.0, 7.5)),
    ):
        if rng.random() < chance:
            station = stations[int(rng.integers(len(stations)))]
            placed = [
                _add_clear(rng, extras, vessels, "lymph_node", station, sizes)
                for _ in range(int(rng.integers(1, 3)))
            ]
            fields[key] = any(placed)


def _moved(case: PancreasCase, p: np.ndarray) -> np.ndarray:
    """World point -> the case's anatomical frame (its shift and scale undone)."""
    return (p - case.shift_mm) / case.scale


def render(case: PancreasCase, grid: Grid) -> Canvas:
    """Paint the study on `grid`: attenuation per phase (`PHASES`) and the label map."""
    canvas = Canvas(grid, AIR)
    s = case.scale

    def paint(shape, tissue, label: int = 0, extruded: bool = False, blur: float = 1.0):
        sdf, (lo, hi) = shape
        moved = lambda p: sdf(_moved(case, p)) * s  # noqa: E731
        bounds = (lo * s + case.shift_mm, hi * s + case.shift_mm)
        return canvas.paint(moved, bounds, tissue, label=label, extruded=extruded, blur=blur)

    body = ellipsoid((0, 0, 0), (150, 112, 400))
    paint(body, FAT, extruded=True)
    paint(ellipsoid((0, -4, 0), (137, 100, 400)), MUSCLE, extruded=True)
    paint(ellipsoid((0, 0, 0), (128, 92, 400)), MESENTERY, extruded=True)
    paint(ellipsoid((0, -68, 0), (22, 17, 400)), CORTEX, extruded=True)
    paint(ellipsoid((0, -68, 0), (19, 14, 400)), BONE, extruded=True)
    paint(ellipsoid((0, -95, 0), (9, 14, 400)), CORTEX, extruded=True)
    for x in (-48.0, 48.0):  # psoas
        paint(ellipsoid((x * 0.9, -62, -40), (16, 16, 70)), MUSCLE)
    paint(ellipsoid((-70, 2, 62), (66, 80, 62)), LIVER, label=ANATOMY_LABELS["liver"])
    paint(
        ellipsoid((88, -22, 48), (24, 40, 48), SPLEEN_TILT), SPLEEN, label=ANATOMY_LABELS["spleen"]
    )
    for x in (-70.0, 72.0):
        paint(
            ellipsoid((x, -50, 0 if x < 0 else 10), (24, 22, 52)),
            KIDNEY,
            label=ANATOMY_LABELS["kidney"],
        )
    # bowel: loops of fluid-filled and gas-filled gut in the lower abdomen
    for k, (a, b) in enumerate(
        [
            ((-60, 40, -70), (60, 45, -60)),
            ((-70, 30, -40), (-40, 55, -75)),
            ((40, 35, -30), (75, 50, -70)),
        ]
    ):
        paint(capsule(a, b, 13.0), BOWEL_WALL)
        paint(capsule(a, b, 10.0), AIR if k == 1 else FLUID)
    # the duodenal C-loop around the pancreatic head
    duodenum = Tube(
        "duodenum",
        np.array([[-18, 28, 14], [-44, 14, 4], [-46, 6, -30], [-20, 2, -50], [14, -2, -48]]),
        11.0,
    )
    paint(duodenum.sdf(), BOWEL_WALL, label=ANATOMY_LABELS["duodenum"])
    paint(Tube("lumen", duodenum.points, 8.0).sdf(), FLUID)
    paint(case.pancreas, PANCREAS, label=ANATOMY_LABELS["pancreas"])
    for name, tube in case.ducts.items():
        paint(tube.sdf(), FLUID, label=ANATOMY_LABELS[name])
    for lesion in case.lesions:
        if lesion.kind == "pdac":
            paint((lesion.sdf, lesion.bounds), lesion.tissue, label=lesion.label)
    arteries = (
        "aorta",
        "celiac_axis",
        "common_hepatic_artery",
        "splenic_artery",
        "superior_mesenteric_artery",
    )
    pdac = next((les for les in case.lesions if les.kind == "pdac"), None)
    # in order: a vessel painted later covers an earlier one where they meet (`painted_over`)
    for name, tube in case.vessels.items():
        tissue = ARTERY if name in arteries else IVC if name == "ivc" else VEIN
        shape = tube.sdf()
        if pdac is not None and pdac.occluded == name:
            shape = _occluded(tube, pdac.sdf)
        paint(shape, tissue, label=ANATOMY_LABELS[name], blur=0.8)
    if pdac is not None and pdac.bite is not None:
        paint(ellipsoid(pdac.bite[0], (pdac.bite[1],) * 3), pdac.tissue, label=pdac.label)
    for lesion in case.lesions:
        if lesion.kind == "cyst":
            paint((lesion.sdf, lesion.bounds), lesion.tissue, label=lesion.label)
    for name, centre, radius in case.extras:
        tissue = METASTASIS if name == "liver_metastasis" else NODE
        label = 0 if name == "normal_node" else ANATOMY_LABELS[name]
        paint(ellipsoid(centre, (radius, radius * 0.8, radius)), tissue, label=label)
    if case.ascites:
        label = ANATOMY_LABELS["ascites"]
        for x in (-1.0, 1.0):  # paracolic gutters and the perihepatic space
            paint(ellipsoid((x * 112, 10, -30), (12, 30, 60)), FLUID, label=label)
        paint(ellipsoid((-95, 40, 50), (18, 40, 30)), FLUID, label=label)
    return canvas
