"""The pancreas CT reader: two outlines, a coarse one of the abdomen and a fine one of
the pancreas and its vessels, measured in world millimetres and read by stated rules.

Vessel contact is a question of a millimetre or two around a 7 mm artery: on the 2 mm
grid even the phantoms' own perfect outlines read NCCN resectability at 0.88
(`bench/pancreas_oracle.py`), and a U-Net over the whole abdomen at the acquisition's
resolution costs more than two CPU cores can train. So the reader is a cascade, as
nnU-Net's is for large volumes:

1. **Coarse** (`COARSE_GRID`, 4 mm, the whole 320 x 256 x 160 mm field): the pancreas
   (with its lesions), the liver, liver deposits, lymph nodes, peritoneal nodules,
   ascites and the aorta: where the pancreas is, and the distant disease that makes a
   tumour metastatic, which lies anywhere in the abdomen.
2. **Fine** (`FINE_GRID`, 1 x 1 x 2 mm, the acquisition's own spacing in a pancreatic
   protocol, 176 x 112 x 112 mm centred on the coarse pancreas's bounding box): the pancreas, tumour,
   cyst, the five vessels whose contact the template asks, the splenic vein and artery
   (so the common hepatic artery is not mistaken for them), the aorta, the main duct and
   the common bile duct.

Both are `UNet3D` at their input's resolution over the three phases (`CT_CHANNELS`,
with which are present as input planes). The outlines go to
`reportgen.measure.pancreas.measure_pancreas_study` and `read_pancreas` turns the
measures into template values: nothing is predicted that a rule does not derive from
an outline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from reportgen.checkpoint import StrictConfig, load_model_folder
from reportgen.io.study import Study
from reportgen.measure import largest_component
from reportgen.measure.pancreas import ORGAN, PancreasMeasures, measure_pancreas_study
from reportgen.model.body_region import RegionReading
from reportgen.model.unet import UNet3D, UNetSpec
from reportgen.preprocessing import (
    CT_CHANNELS,
    CT_WINDOW_HU,
    GridSpec,
    PreparedCT,
    prepare_ct,
)

READER_TYPE = "reportgen-pancreas-reader"  # config.json's model_type
COARSE_GRID = GridSpec((80, 64, 40), (4.0, 4.0, 4.0))
FINE_GRID = GridSpec((176, 112, 56), (1.0, 1.0, 2.0))
NODULE_GRID = GridSpec((176, 144, 96), (2.0, 2.0, 2.0))  # the abdomen, for small deposits
# outline classes (index = class; 0 is background). "lesion" is a tumour or a cyst: the
# coarse outline only needs to know the pancreas's extent, the fine one tells them apart
COARSE_CLASSES = (
    "background",
    "pancreas",
    "lesion",
    "liver",
    "liver_metastasis",
    "lymph_node",
    "peritoneal_nodule",
    "ascites",
    "aorta",
)
FINE_CLASSES = (
    "background",
    "pancreas",
    "tumour",
    "cyst",
    "aorta",
    "celiac_axis",
    "common_hepatic_artery",
    "superior_mesenteric_artery",
    "superior_mesenteric_vein",
    "portal_vein",
    "splenic_vein",
    "splenic_artery",
    "pancreatic_duct",
    "common_bile_duct",
    # the pancreas's neighbours, named so the outline learns where it ends (without them
    # the tail ran on into the spleen and the head into the duodenal wall)
    "spleen",
    "duodenum",
    "kidney",
    "ivc",
    "lymph_node",
)
# a phantom lesion's subtype -> the outline class it is drawn as, on each grid
FINE_LESIONS = {"ductal_adenocarcinoma": "tumour", "cystic_lesion": "cyst"}
COARSE_LESIONS = dict.fromkeys(FINE_LESIONS, "lesion")
DISTANT = ("liver", "liver_metastasis", "lymph_node", "peritoneal_nodule", "ascites", "aorta")


@dataclass
class PancreasReaderConfig(StrictConfig):
    """The two outlines' grids, classes and widths; the template they fill."""

    KIND: ClassVar[str] = "pancreas reader"

    template: str = "pancreas_ct"
    coarse_shape: tuple[int, int, int] = COARSE_GRID.shape
    coarse_spacing: tuple[float, float, float] = COARSE_GRID.spacing
    fine_shape: tuple[int, int, int] = FINE_GRID.shape
    fine_spacing: tuple[float, float, float] = FINE_GRID.spacing
    coarse_classes: tuple[str, ...] = COARSE_CLASSES
    fine_classes: tuple[str, ...] = FINE_CLASSES
    coarse_widths: tuple[int, ...] = (8, 16, 32, 64)
    fine_widths: tuple[int, ...] = (16, 32, 64, 96)
    name: str = "reportgen-pancreas-reader"
    version: str = "0.1.0"
    sequences: tuple[str, ...] = CT_CHANNELS
    # how typical a CT is of the training studies (`typicality`): the mean and inverse
    # covariance of `region_features` over the training studies, and the distance 99% of
    # held-back studies stay under; empty: not fitted
    typical_mean: tuple[float, ...] = ()
    typical_precision: tuple[tuple[float, ...], ...] = ()
    typical_threshold: float = 0.0

    def __post_init__(self) -> None:
        for key in ("coarse_shape", "coarse_spacing", "fine_shape", "fine_spacing"):
            setattr(self, key, tuple(getattr(self, key)))
        for key in ("coarse_classes", "fine_classes", "coarse_widths", "fine_widths", "sequences"):
            setattr(self, key, tuple(getattr(self, key)))
        self.typical_mean = tuple(self.typical_mean)
        self.typical_precision = tuple(tuple(row) for row in self.typical_precision)

    @property
    def coarse_grid(self) -> GridSpec:
        return GridSpec(self.coarse_shape, self.coarse_spacing)

    @property
    def fine_grid(self) -> GridSpec:
        return GridSpec(self.fine_shape, self.fine_spacing)


def outline_spec(widths: tuple[int, ...], classes: int) -> UNetSpec:
    """Both outlines' U-Net: at the input's resolution, phases present as planes."""
    return UNetSpec(
        in_channels=len(CT_CHANNELS),
        widths=widths,
        out_channels=classes,
        full_resolution=True,
        present_planes=True,
    )


class PancreasReader(nn.Module):
    def __init__(self, cfg: PancreasReaderConfig):
        super().__init__()
        self.cfg = cfg
        self.coarse = UNet3D(outline_spec(cfg.coarse_widths, len(cfg.coarse_classes)))
        self.fine = UNet3D(outline_spec(cfg.fine_widths, len(cfg.fine_classes)))


def is_pancreas_reader(folder: Path) -> bool:
    """True when a model folder holds a pancreas reader (its config says so)."""
    try:
        return (
            json.loads((Path(folder) / "config.json").read_text()).get("model_type") == READER_TYPE
        )
    except (OSError, ValueError):
        return False


def load_pancreas_reader(folder: Path, device: str = "cpu") -> PancreasReader:
    return load_model_folder(folder, READER_TYPE, PancreasReaderConfig, PancreasReader, device)


def class_lookup(truth: dict, classes: tuple[str, ...], lesion_class: dict[str, str]) -> np.ndarray:
    """Phantom mask label -> outline class index (0 for labels the outline ignores):
    anatomy by name, each lesion by `lesion_class` of its subtype."""
    from reportgen.data.truth import lesion_labels

    table = np.zeros(256, np.int64)
    for name, label in truth.get("anatomy_labels", {}).items():
        if name in classes:
            table[int(label)] = classes.index(name)
    for lesion in truth.get("lesions", []):
        name = lesion_class.get(lesion["subtype"])
        if name in classes:
            table[lesion_labels(lesion)] = classes.index(name)
    return table


def hounsfield(prepared: PreparedCT) -> dict[str, np.ndarray]:
    """The prepared phases back in HU (within the window), by phase name."""
    low, high = CT_WINDOW_HU
    return {
        name: prepared.image[k] * (high - low) + low
        for k, name in enumerate(CT_CHANNELS)
        if prepared.present[k]
    }


def box_centre(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The world centre (mm) of a mask's bounding box: where a crop holding all of an
    organ is centred (its centroid lies toward the bulky head, and the tail runs off)."""
    voxels = np.argwhere(mask)
    middle = (voxels.min(axis=0) + voxels.max(axis=0)) / 2.0
    return affine[:3, :3] @ middle + affine[:3, 3]


@torch.no_grad()
def classes_and_confidence(net: UNet3D, prepared: PreparedCT) -> tuple[np.ndarray, np.ndarray]:
    """Class index per voxel of a prepared grid, and the outline's confidence there (its
    largest softmax probability)."""
    image = torch.from_numpy(prepared.image)[None]
    present = torch.from_numpy(prepared.present)[None]
    best = net(image, present)[0].softmax(0).max(0)
    return best.indices.numpy().astype(np.int16), best.values.numpy()


def outline(net: UNet3D, prepared: PreparedCT) -> np.ndarray:
    """Class index per voxel of a prepared grid."""
    return classes_and_confidence(net, prepared)[0]


@dataclass
class PancreasOutlines:
    """What the reader drew: the fine outlines on the fine grid, the coarse ones on the
    coarse grid, and both grids' phases in HU."""

    fine: dict[str, np.ndarray]
    fine_affine: np.ndarray
    fine_hu: dict[str, np.ndarray]
    coarse: dict[str, np.ndarray]
    coarse_affine: np.ndarray
    pancreas_found: bool
    coarse_pv_hu: np.ndarray | None = None  # the portal venous phase on the coarse grid
    # the portal venous phase on `NODULE_GRID` and its affine (peritoneal nodules)
    nodule_pv: tuple[np.ndarray, np.ndarray] | None = None


def one_organ(named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fine outline as anatomy has it: one pancreas (the largest connected part of
    parenchyma, lesions and duct; specks elsewhere are not pancreas), and each lesion
    one thing (a connected part outlined partly as tumour and partly as cyst is the
    kind most of its voxels are), so a lesion is never reported twice or in halves."""
    organ = largest_component(np.logical_or.reduce([named[n] for n in ORGAN]))
    out = {name: mask & organ if name in ORGAN else mask for name, mask in named.items()}
    lesions, count = ndimage.label(out["tumour"] | out["cyst"])
    if count:
        index = np.arange(1, count + 1)
        solid = ndimage.sum_labels(out["tumour"], lesions, index)
        fluid = ndimage.sum_labels(out["cyst"], lesions, index)
        tumour_parts = index[solid >= fluid]
        out["tumour"] = np.isin(lesions, tumour_parts)
        out["cyst"] = (lesions > 0) & ~out["tumour"]
    return out


def nodule_phase(study: Study) -> tuple[np.ndarray, np.ndarray] | None:
    """The portal venous phase (HU) on `NODULE_GRID` over the body, and its affine, where
    the study has one: peritoneal nodules are read there
    (`reportgen.measure.pancreas.soft_tissue_nodules`)."""
    if "CT_PV" not in study.sequences:
        return None
    portal_venous = replace(study, sequences={"CT_PV": study.sequences["CT_PV"]}, lesion_mask=None)
    prepared = prepare_ct(portal_venous, NODULE_GRID, with_mask=False)
    return hounsfield(prepared)["CT_PV"], prepared.affine


def read_outlines(reader: PancreasReader, study: Study) -> PancreasOutlines:
    """Coarse outline of the abdomen, then the fine outline around its pancreas."""
    cfg = reader.cfg
    coarse = prepare_ct(study, cfg.coarse_grid, with_mask=False)
    coarse_labels = outline(reader.coarse, coarse)
    named = {name: coarse_labels == k for k, name in enumerate(cfg.coarse_classes) if k and name}
    organ = largest_component(named["pancreas"] | named["lesion"])
    found = bool(organ.any())
    centre = box_centre(organ, coarse.affine) if found else None
    fine = prepare_ct(study, cfg.fine_grid, with_mask=False, centre_mm=centre)
    fine_labels = outline(reader.fine, fine)
    return PancreasOutlines(
        fine=one_organ({name: fine_labels == k for k, name in enumerate(cfg.fine_classes) if k}),
        fine_affine=fine.affine,
        fine_hu=hounsfield(fine),
        coarse=named,
        coarse_affine=coarse.affine,
        pancreas_found=found,
        coarse_pv_hu=hounsfield(coarse).get("CT_PV"),
        nodule_pv=nodule_phase(study),
    )


def measure_outlines(outlines: PancreasOutlines) -> PancreasMeasures:
    """The study measured from the reader's outlines: the pancreas, its lesions, ducts
    and vessels on the fine grid; distant disease on the coarse one."""
    distant = {name: outlines.coarse[name] for name in DISTANT if name in outlines.coarse}
    return measure_pancreas_study(
        outlines.fine,
        outlines.fine_hu,
        outlines.fine_affine,
        (distant, outlines.coarse_affine),
        outlines.coarse_pv_hu,
        outlines.nodule_pv,
    )


# a CT shows the abdomen a pancreas report speaks of when its coarse outline holds this
# much liver and pancreas (mL): a phantom's liver is about 1,200 mL and its pancreas
# 60-90 mL; a chest, a pelvis or a slab of a few slices holds far less of either
ABDOMEN_LIVER_ML = 200.0
ABDOMEN_PANCREAS_ML = 15.0
# a pancreas CT covers the pancreas and its vessels, from the celiac axis to below the
# uncinate process: fewer millimetres craniocaudally than this cannot show them
MIN_CRANIOCAUDAL_MM = 100.0
REGION_ORGANS = ("liver", "pancreas", "aorta")  # `region_features`' volumes


def craniocaudal_mm(study: Study) -> float:
    """How far the study's first CT phase reaches along the body's long axis (mm)."""
    name = next(n for n in study.sequences if n in (*CT_CHANNELS, "CT"))
    volume = study.sequences[name]
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    corners *= np.asarray(volume.data.shape[:3], float) - 1
    z = corners @ volume.affine[:3, :3].T[:, 2] + volume.affine[2, 3]
    return float(z.max() - z.min())


@torch.no_grad()
def coarse_reading(reader: PancreasReader, prepared: PreparedCT) -> tuple[np.ndarray, np.ndarray]:
    """The coarse outline's classes and its confidence per voxel."""
    return classes_and_confidence(reader.coarse, prepared)


def region_features(
    cfg: PancreasReaderConfig, labels: np.ndarray, confidence: np.ndarray
) -> np.ndarray:
    """What says how phantom-like a CT looks to the coarse outline: the log volumes (mL)
    of its liver, pancreas (with lesions) and aorta, and its mean confidence inside the
    body (log odds)."""
    voxel_ml = float(np.prod(cfg.coarse_spacing)) / 1000.0
    organs = {
        "liver": labels == cfg.coarse_classes.index("liver"),
        "pancreas": np.isin(labels, [cfg.coarse_classes.index(n) for n in ("pancreas", "lesion")]),
        "aorta": labels == cfg.coarse_classes.index("aorta"),
    }
    volumes = [np.log1p(organs[name].sum() * voxel_ml) for name in REGION_ORGANS]
    inside = labels > 0
    mean = float(confidence[inside].mean()) if inside.any() else 0.5
    mean = min(max(mean, 1e-4), 1 - 1e-4)
    return np.array([*volumes, np.log(mean / (1 - mean))], np.float64)


def typicality(cfg: PancreasReaderConfig, features: np.ndarray) -> float:
    """Mahalanobis distance of `region_features` from the training studies' (0 when the
    reader has no fitted statistics)."""
    if not cfg.typical_mean:
        return 0.0
    delta = features - np.asarray(cfg.typical_mean)
    return float(np.sqrt(max(delta @ np.asarray(cfg.typical_precision) @ delta, 0.0)))


def read_ct_region(reader: PancreasReader, study: Study) -> RegionReading:
    """The body region a CT shows, read by the reader's coarse outline: "abdomen" when it
    outlines enough liver and pancreas (`ABDOMEN_LIVER_ML`, `ABDOMEN_PANCREAS_ML`) in a
    field of view long enough to hold them (`MIN_CRANIOCAUDAL_MM`), else "other"; its
    probability is the outline's mean confidence over the pancreas it found, and its
    distance how unlike the training studies the study looks (`typicality`)."""
    cfg = reader.cfg
    coarse = prepare_ct(study, cfg.coarse_grid, with_mask=False)
    labels, confidence = coarse_reading(reader, coarse)
    voxel_ml = float(np.prod(cfg.coarse_spacing)) / 1000.0
    organ = np.isin(labels, [cfg.coarse_classes.index(n) for n in ("pancreas", "lesion")])
    liver_ml = float((labels == cfg.coarse_classes.index("liver")).sum()) * voxel_ml
    abdomen = (
        liver_ml >= ABDOMEN_LIVER_ML
        and organ.sum() * voxel_ml >= ABDOMEN_PANCREAS_ML
        and craniocaudal_mm(study) >= MIN_CRANIOCAUDAL_MM
    )
    probability = float(confidence[organ].mean()) if organ.any() else 0.0
    distance = typicality(cfg, region_features(cfg, labels, confidence))
    threshold = cfg.typical_threshold if cfg.typical_mean else 1.0
    return RegionReading(
        "abdomen" if abdomen else "other", round(probability, 4), distance, threshold
    )
