"""A pancreas CT measured from its outlines: each lesion's size, part of the pancreas,
attenuation against the pancreas and contact with each vessel; duct widths; deposits,
nodes and ascites. What a SAR/APA report states, before any words.

Where in the pancreas a lesion is follows the landmarks the SAR/APA template uses
(Al-Hawary et al., Radiology 2014): the head (with the uncinate process) lies to the
right of the superior mesenteric vein's right border, the neck in front of the SMV and
portal confluence, the body from the SMV's left border to the aorta's left border, the
tail beyond it toward the splenic hilum. Model-free: outlines and positions in world
millimetres (RAS: x grows to the patient's left), whoever drew them (a phantom's painted
shapes, a reader's outlines).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from reportgen.measure.geometry import lesion_body, measure_lesion
from reportgen.measure.vessels import (
    VesselContact,
    centreline,
    channel_cut,
    vessel_contact,
    voxel_spacing,
    world_points,
)

PARTS = ("pancreas_head", "pancreas_neck", "pancreas_body", "pancreas_tail")


def pancreas_part(
    x_mm: float, smv_x_mm: float, smv_radius_mm: float, aorta_left_x_mm: float
) -> str:
    """The part of the pancreas at left-right position `x_mm` (a lesion's centre)."""
    if x_mm < smv_x_mm - smv_radius_mm:
        return "pancreas_head"
    if x_mm <= smv_x_mm + smv_radius_mm:
        return "pancreas_neck"
    if x_mm <= aorta_left_x_mm:
        return "pancreas_body"
    return "pancreas_tail"


# --- a pancreas CT study measured from its outlines --------------------------------------


CONTACT_VESSEL_NAMES = (
    "superior_mesenteric_artery",
    "celiac_axis",
    "common_hepatic_artery",
    "superior_mesenteric_vein",
    "portal_vein",
)
# one venous channel: an occlusion cuts it, wherever along it the tumour sits
PORTAL_AXIS = ("superior_mesenteric_vein", "portal_vein")
PORTAL_CHANNEL = (*PORTAL_AXIS, "splenic_vein")  # the lumen the two share at the confluence
OCCLUSION_GAP_MM = 5.0  # a cut in the channel at least this wide, filled by the tumour
MIN_LESION_MM3 = 100.0  # a tumour or cyst outline smaller than this is noise
# ... and one thinner than this (the largest distance from inside it to its edge, mm): a
# sliver along an edge is partial volume, not a lesion (a lesion 7 mm across is 3.5)
ORGAN = ("pancreas", "tumour", "cyst", "pancreatic_duct")  # the gland, lesions included
MIN_LESION_THICKNESS_MM = 3.5
MIN_DEPOSIT_MM3 = 30.0  # a metastasis, node or nodule
BODY_RADIUS_MM = 3.0  # a lesion is sized without its outline's rays thinner than 6 mm
MAX_LESIONS = 4  # of each kind, the largest measured (a report states at most two)
# a liver deposit of a ductal adenocarcinoma is hypoattenuating in the portal venous phase
# (hypovascular metastases: Al-Hawary 2014): a focus at least this far below the liver's
# median, above fluid (a cyst), wholly surrounded by liver at parenchymal attenuation
DEPOSIT_CONTRAST_HU = 30.0
FLUID_HU = 20.0
RIM_TOLERANCE_HU = 15.0
# the bile duct and portal vein run into the liver at its hilum: a dark focus beside their
# outline (on the fine grid) is the duct's partial volume, not a deposit
HILUM = ("common_bile_duct", "portal_vein")
HILUM_MARGIN_MM = 8.0


@dataclass(frozen=True)
class PancreaticLesion:
    kind: str  # "tumour" | "cyst"
    size_mm: float
    centre_mm: tuple[float, float, float]
    part: str  # `pancreas_part`
    attenuation_delta_hu: dict[str, float]  # per phase: lesion mean minus pancreas mean
    attenuation_hu: dict[str, float]  # per phase: the lesion's median (HU)
    duct_distance_mm: float  # from the lesion to the main duct's outline
    contacts: dict[str, VesselContact]  # vessel name -> contact
    # the lesion's outline on the measured grid (what a key image and a SEG show)
    outline: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class PancreasMeasures:
    lesions: list[PancreaticLesion]
    duct_diameter_mm: float  # the main pancreatic duct's width along its course
    cbd_diameter_mm: float  # the common bile duct's widest
    liver_deposits: int
    peritoneal_nodules: int
    ascites_ml: float
    nodes: list[tuple[float, float, float, float]]  # (x, y, z, short axis mm) per node
    aorta_x_mm: float | None
    aorta_left_x_mm: float | None
    smv_radius_mm: float
    # the pancreas's lowest point (world z, mm; its lesions included): a node beside the
    # aorta below it is para-aortic, non-regional; None when no pancreas is outlined
    pancreas_lowest_z_mm: float | None = None


def _components(
    mask: np.ndarray, voxel_mm3: float, minimum: float, largest: int | None = None
) -> list[np.ndarray]:
    """Connected parts of at least `minimum` mm3, largest first (the `largest` of them)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1)) * voxel_mm3
    order = [k for k in np.argsort(-sizes, kind="stable") if sizes[k] >= minimum]
    return [labels == k + 1 for k in order[:largest]]


DUCT_WIDTH_PERCENTILE = 90.0


def _duct_width_mm(mask: np.ndarray, affine: np.ndarray) -> float:
    """A duct's width along its course: the diameter at each point of its centreline
    (`centreline`'s radius, doubled less one voxel as `_widest_mm` reads it), the widest
    tenth's lower edge. The single widest point is where a voxel's diagonal lies across
    the duct: a normal 2 mm duct on a 1 mm grid read 3.5 mm there and was called dilated
    (the current reader on development phantoms of seed 41000: 9 of 60 normal ducts);
    along its course every normal duct read 3.0 mm or less and every dilated one (4.5-7
    mm) 3.5 or more."""
    if not mask.any():
        return 0.0
    _, radii = centreline(mask, affine)
    step = float(np.min(voxel_spacing(affine)))
    return max(step, float(np.percentile(2.0 * radii - step, DUCT_WIDTH_PERCENTILE)))


def _widest_mm(mask: np.ndarray, spacing: np.ndarray) -> float:
    """A tube's widest diameter: twice its largest inside distance, less one voxel (the
    distance runs from a voxel's centre to the centre of the first one outside, half a
    voxel past the wall on each side), so a duct one voxel wide reads one voxel, not two."""
    if not mask.any():
        return 0.0
    inside = float(ndimage.distance_transform_edt(mask, sampling=spacing).max())
    return max(float(np.min(spacing)), 2.0 * inside - float(np.min(spacing)))


def hypoattenuating_liver_foci(portal_venous_hu: np.ndarray, liver: np.ndarray) -> np.ndarray:
    """Foci in the liver darker than its parenchyma in the portal venous phase, read from
    the pixels whatever an outline called them (a deposit a few voxels across is the rarest
    thing an outline learns). A focus counts where its rim (the voxels touching it) lies
    wholly in the liver at parenchymal attenuation: what is darker at the liver's edge is
    partial volume with fat, and at the hilum partial volume with the bile ducts."""
    liver = ndimage.binary_fill_holes(liver)
    parenchyma = ndimage.binary_erosion(liver)
    if not parenchyma.any():
        return np.zeros_like(liver)
    median = float(np.median(portal_venous_hu[parenchyma]))
    dark = liver & (portal_venous_hu < median - DEPOSIT_CONTRAST_HU)
    dark &= portal_venous_hu > FLUID_HU
    parts, _ = ndimage.label(dark)
    touching = ndimage.generate_binary_structure(3, 3)
    kept = np.zeros_like(liver)
    for k, box in enumerate(ndimage.find_objects(parts), start=1):
        # each focus's rim within its box grown by one voxel (the liver's edge holds
        # hundreds of dark specks: dilating each over the whole grid cost seconds)
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        part = parts[box] == k
        rim = ndimage.binary_dilation(part, touching) & ~part
        rim_hu = portal_venous_hu[box][rim]
        if liver[box][rim].all() and np.median(rim_hu) >= median - RIM_TOLERANCE_HU:
            kept[box] |= part
    return kept


# a peritoneal nodule is read in the portal venous phase as a solid soft-tissue nodule in
# the fat in front of the pancreas (omentum, mesentery), free of bowel and organs
NODULE_SMOOTHING_MM = 1.0  # noise suppressed before the threshold
NODULE_SOFT_TISSUE_HU = 0.0  # above this is soft tissue (fat is about -100)
NODULE_FAT_HU = -40.0  # below this is fat
NODULE_MM3 = (100.0, 4000.0)  # a nodule 6 to 20 mm across
# thicker than this (the largest distance from inside it to its edge): a normal mesenteric
# node (at most 6 mm across, 2.4 mm here) and the bowel's wall (3 mm thick) are thinner
NODULE_CORE_MM = 2.5
NODULE_IN_FAT = 0.6  # at least this share of the shell around it (2 voxels) is fat


def soft_tissue_nodules(
    portal_venous_hu: np.ndarray, affine: np.ndarray, in_front_of_mm: float
) -> list[np.ndarray]:
    """The world centres (mm) of solid soft-tissue nodules in fat anterior to
    `in_front_of_mm` (the pancreas's anterior edge, world y), read from the pixels of a
    grid of about 2 mm: peritoneal deposits (6-12 mm) are one to three voxels of the
    coarse outline's 4 mm grid, where partial volume with fat leaves them no class
    (development phantoms: the outline found none). A nodule is a connected part above
    `NODULE_SOFT_TISSUE_HU` of `NODULE_MM3`, thicker than `NODULE_CORE_MM`, whose shell
    is mostly fat; bowel, muscle and organs are far larger or thinner, and the
    retroperitoneal nodes lie behind the pancreas's front."""
    spacing = voxel_spacing(affine)
    voxel = float(np.prod(spacing))
    smooth = ndimage.gaussian_filter(
        portal_venous_hu.astype(np.float32), sigma=NODULE_SMOOTHING_MM / spacing
    )
    parts, _ = ndimage.label(smooth > NODULE_SOFT_TISSUE_HU)
    sizes = np.bincount(parts.ravel())[1:] * voxel
    centres = []
    for k, box in enumerate(ndimage.find_objects(parts), start=1):
        if box is None or not NODULE_MM3[0] <= sizes[k - 1] <= NODULE_MM3[1]:
            continue
        box = tuple(slice(max(b.start - 3, 0), b.stop + 3) for b in box)
        part = parts[box] == k
        if ndimage.distance_transform_edt(part, sampling=spacing).max() < NODULE_CORE_MM:
            continue
        shell = ndimage.binary_dilation(part, iterations=2) & ~part
        if (smooth[box][shell] < NODULE_FAT_HU).mean() < NODULE_IN_FAT:
            continue
        index = np.argwhere(part).mean(axis=0) + [b.start for b in box]
        centre = affine[:3, :3] @ index + affine[:3, 3]
        if centre[1] > in_front_of_mm:
            centres.append(centre)
    return centres


def _clear_of(
    mask: np.ndarray, affine: np.ndarray, points: np.ndarray, margin_mm: float
) -> np.ndarray:
    """The connected parts of `mask` none of whose voxels lies within `margin_mm` of any of
    `points` (world mm)."""
    if not len(points) or not mask.any():
        return mask
    tree = cKDTree(points)
    parts, n = ndimage.label(mask)
    kept = np.zeros_like(mask)
    for k in range(1, n + 1):
        part = parts == k
        near, _ = tree.query(world_points(part, affine), distance_upper_bound=margin_mm)
        if np.isinf(near).all():
            kept |= part
    return kept


@dataclass(frozen=True)
class Occlusion:
    vein: str  # the `PORTAL_AXIS` vein occluded
    ends: tuple[np.ndarray, np.ndarray]  # where the channel stops on each side (world mm)


def occluded_vein(
    outline: dict[str, np.ndarray], empty: np.ndarray, tumour: np.ndarray, affine: np.ndarray
) -> Occlusion | None:
    """Which of the `PORTAL_AXIS` veins a tumour occludes, if any. The two are one
    channel: a tumour at their confluence cuts the channel while leaving each vein's own
    outline whole, so the cut is found on both together (`channel_cut`) and belongs to
    the vein whose outline ends there; where one ends on each side (a cut across the
    confluence), to the one that stops farther from the confluence (where the splenic
    vein joins): its missing stretch is the longer."""
    smv, pv = (outline.get(name, empty) for name in PORTAL_AXIS)
    cut = channel_cut(smv | pv, tumour, affine, OCCLUSION_GAP_MM)
    if cut is None:
        return None
    to_voxel = np.linalg.inv(affine)
    owners = []
    for end in cut:
        index = tuple(np.rint(end @ to_voxel[:3, :3].T + to_voxel[:3, 3]).astype(int))
        owners.append(PORTAL_AXIS[0] if smv[index] else PORTAL_AXIS[1])
    if owners[0] == owners[1]:
        return Occlusion(owners[0], cut)
    splenic = world_points(outline.get("splenic_vein", empty), affine)
    if not len(splenic):
        return Occlusion(PORTAL_AXIS[0], cut)
    middle = (cut[0] + cut[1]) / 2.0
    confluence = splenic[np.argmin(np.linalg.norm(splenic - middle, axis=1))]
    missing = {
        owner: float(np.linalg.norm(end - confluence))
        for owner, end in zip(owners, cut, strict=True)
    }
    return Occlusion(max(missing, key=missing.get), cut)


def _contacts(
    outline: dict[str, np.ndarray],
    empty: np.ndarray,
    tumour: np.ndarray,
    affine: np.ndarray,
    vein_hu: np.ndarray | None = None,
) -> dict[str, VesselContact]:
    """Each contact vessel's `VesselContact` with one tumour, the occluded vein marked;
    the other vein's stump at the cut is no cross-section of it (`vessel_contact`'s
    `stumps`). The veins' contours are read in the portal venous phase, where they are
    brightest (else in the pancreatic phase)."""
    occlusion = occluded_vein(outline, empty, tumour, affine)
    stumps = occlusion.ends if occlusion is not None else ()
    portal_channel = np.logical_or.reduce([outline.get(name, empty) for name in PORTAL_CHANNEL])
    return {
        name: replace(
            vessel_contact(
                outline.get(name, empty),
                tumour,
                affine,
                stumps=stumps if name in PORTAL_AXIS else (),
                image=vein_hu if name in PORTAL_AXIS else None,
                lumen=portal_channel if name in PORTAL_AXIS else None,
            ),
            occluded=occlusion is not None and name == occlusion.vein,
        )
        for name in CONTACT_VESSEL_NAMES
    }


def measure_pancreas_study(
    outline: dict[str, np.ndarray],
    hu: dict[str, np.ndarray],
    affine: np.ndarray,
    distant: tuple[dict[str, np.ndarray], np.ndarray] | None = None,
    distant_pv_hu: np.ndarray | None = None,
    nodule_pv: tuple[np.ndarray, np.ndarray] | None = None,
) -> PancreasMeasures:
    """Measure what a pancreas CT's report states, from outlines (name -> boolean mask:
    pancreas, tumour, cyst, the vessels, ducts, liver, liver_metastasis, lymph_node,
    peritoneal_nodule, ascites) and the phases' HU images on the same grid. `distant`:
    the outlines (and their grid's affine) the deposits, nodes and ascites are measured
    on (and the aorta, where `outline` lacks it), where a reader draws them on another grid than the
    pancreas (a coarse one of the whole abdomen); by default `outline` itself. `distant_pv_hu`:
    the portal venous phase on that grid (HU), where the study has one: the liver's
    hypoattenuating foci there count as deposits beside those outlined
    (`hypoattenuating_liver_foci`). `nodule_pv`: the portal venous phase (HU) on a grid of
    about 2 mm over the abdomen and its affine, where peritoneal nodules are read in the
    pixels (`soft_tissue_nodules`) beside those outlined."""
    spacing = voxel_spacing(affine)
    voxel = float(np.prod(spacing))
    empty = np.zeros(next(iter(outline.values())).shape, bool)
    get = lambda name: outline.get(name, empty)  # noqa: E731
    far, far_affine = distant if distant is not None else (outline, affine)
    far_spacing = voxel_spacing(far_affine)
    far_voxel = float(np.prod(far_spacing))
    far_empty = np.zeros(next(iter(far.values())).shape, bool)
    get_far = lambda name: far.get(name, far_empty)  # noqa: E731
    smv = get("superior_mesenteric_vein")
    smv_points = world_points(smv, affine)
    # the aorta on the finer grid that has it (the body's left border is one of its edges)
    aorta_points = world_points(get("aorta"), affine)
    if not len(aorta_points):
        aorta_points = world_points(get_far("aorta"), far_affine)
    smv_radius = (
        float(ndimage.distance_transform_edt(smv, sampling=spacing).max()) if smv.any() else 5.0
    )
    duct = get("pancreatic_duct")
    duct_distance = ndimage.distance_transform_edt(~duct, sampling=spacing) if duct.any() else None
    lesions = []
    for kind in ("tumour", "cyst"):
        parts = [
            part
            for part in _components(get(kind), voxel, MIN_LESION_MM3)
            if ndimage.distance_transform_edt(part, sampling=spacing).max()
            >= MIN_LESION_THICKNESS_MM
        ]
        for part_mask in parts[:MAX_LESIONS]:
            geometry = measure_lesion(part_mask, affine)
            body = measure_lesion(lesion_body(part_mask, BODY_RADIUS_MM, spacing), affine)
            centre = np.asarray(geometry.centre_mm)
            if len(smv_points):
                level = smv_points[np.abs(smv_points[:, 2] - centre[2]) <= 3.0]
                smv_x = float(np.median((level if len(level) else smv_points)[:, 0]))
            else:
                smv_x = 0.0
            aorta_left = float(aorta_points[:, 0].max()) if len(aorta_points) else 25.0
            pancreas = get("pancreas") & ~part_mask
            delta = {
                phase: float(image[part_mask].mean() - image[pancreas].mean())
                if pancreas.any()
                else 0.0
                for phase, image in hu.items()
            }
            lesions.append(
                PancreaticLesion(
                    kind,
                    # callipers between edge voxels' centres: the voxels' outer corners
                    # overstate a 1 x 1 x 2 mm outline by about 2 mm (the phantoms' own
                    # outlines, 75 development tumours: +1.96 mm; centres -0.17 mm)
                    body.centre_diameter_mm,
                    geometry.centre_mm,
                    pancreas_part(float(centre[0]), smv_x, smv_radius, aorta_left),
                    delta,
                    {phase: float(np.median(image[part_mask])) for phase, image in hu.items()},
                    float(duct_distance[part_mask].min()) if duct_distance is not None else 99.0,
                    _contacts(outline, empty, part_mask, affine, hu.get("CT_PV", hu.get("CT_PANC")))
                    if kind == "tumour"
                    else {},
                    part_mask,
                )
            )
    nodes = []
    for node in _components(get_far("lymph_node"), far_voxel, MIN_DEPOSIT_MM3):
        x, y, z = world_points(node, far_affine).mean(0)
        short = _widest_mm(node, far_spacing)
        nodes.append((float(x), float(y), float(z), short))
    liver = get_far("liver") | get_far("liver_metastasis")
    deposits = get_far("liver_metastasis")
    if distant_pv_hu is not None:
        foci = hypoattenuating_liver_foci(distant_pv_hu, liver)
        hilum = world_points(np.logical_or.reduce([get(n) for n in HILUM]), affine)
        deposits = deposits | _clear_of(foci, far_affine, hilum, HILUM_MARGIN_MM)
    organ_points = world_points(np.logical_or.reduce([get(n) for n in ORGAN]), affine)
    outlined_nodules = len(_components(get_far("peritoneal_nodule"), far_voxel, MIN_DEPOSIT_MM3))
    read_nodules = (
        soft_tissue_nodules(*nodule_pv, in_front_of_mm=float(organ_points[:, 1].max()))
        if nodule_pv is not None and len(organ_points)
        else []
    )
    return PancreasMeasures(
        lesions=sorted(lesions, key=lambda les: (les.kind != "tumour", -les.size_mm)),
        duct_diameter_mm=_duct_width_mm(duct, affine),
        cbd_diameter_mm=_widest_mm(get("common_bile_duct"), spacing),
        liver_deposits=len(
            _components(deposits & ndimage.binary_fill_holes(liver), far_voxel, MIN_DEPOSIT_MM3)
        ),
        peritoneal_nodules=max(outlined_nodules, len(read_nodules)),
        ascites_ml=float(get_far("ascites").sum() * far_voxel / 1000.0),
        nodes=nodes,
        aorta_x_mm=float(np.median(aorta_points[:, 0])) if len(aorta_points) else None,
        aorta_left_x_mm=float(aorta_points[:, 0].max()) if len(aorta_points) else None,
        smv_radius_mm=smv_radius,
        pancreas_lowest_z_mm=float(organ_points[:, 2].min()) if len(organ_points) else None,
    )
