"""The in-memory study: named 3D volumes with their affines, and what is missing.

Every reader (study folder, 3D/4D NIfTI, DICOM) produces this one type; nothing
downstream needs to know where a study came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from reportgen.io.sequences import CT_PROTOCOL, PROTOCOL, modality_of, protocol_order


def pseudonymous_name_id(name: str) -> str:
    """The study id of a study known only by its file or folder name: a hash, because
    users name folders after patients ("Müller Anna 1962"), and a study id is written into
    reports, file names and logs. Stable: the same name gives the same id."""
    return "study-" + hashlib.sha256(f"name:{name}".encode()).hexdigest()[:16]


@dataclass
class Volume:
    """One 3D image in world (RAS+ mm) coordinates, as NIfTI defines them."""

    data: np.ndarray  # float32, 3D, voxel values after scl_slope/inter
    affine: np.ndarray  # 4x4 voxel -> world (RAS+, mm)
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.affine))

    @property
    def is_oblique(self) -> bool:
        direction = self.affine[:3, :3] / np.asarray(self.spacing)
        return bool(np.abs(np.abs(direction) - np.round(np.abs(direction))).max() > 1e-3)


@dataclass
class Study:
    """A study's named sequences (canonical names), optional lesion mask, and provenance."""

    study_id: str
    sequences: dict[str, Volume]
    source: str
    form: str  # "folder" | "nifti3d" | "nifti4d" | "dicom"
    lesion_mask: Volume | None = None
    warnings: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sequences = {
            name: self.sequences[name] for name in protocol_order(list(self.sequences))
        }

    @property
    def modality(self) -> str:
        """ "CT" or "MR", from the series' canonical names."""
        return modality_of(self.sequences)

    @property
    def missing(self) -> list[str]:
        """Protocol series this study does not have (its modality's protocol); nothing is
        fabricated for them."""
        protocol = CT_PROTOCOL if self.modality == "CT" else PROTOCOL
        return [name for name in protocol if name not in self.sequences]

    def summary(self) -> dict:
        """A JSON-ready description of what was read (no voxel data, no identifiers)."""
        return {
            "study_id": self.study_id,
            "form": self.form,
            "modality": self.modality,
            "source": self.source,
            "sequences": {
                name: {
                    "shape": list(vol.shape),
                    "spacing_mm": [round(s, 4) for s in vol.spacing],
                    "orientation": vol.orientation,
                    "oblique": vol.is_oblique,
                    "range": [float(np.min(vol.data)), float(np.max(vol.data))],
                    "file": vol.source,
                    "named_because": self.metadata.get("series", {}).get(name, {}).get("reason"),
                }
                for name, vol in self.sequences.items()
            },
            "missing": self.missing,
            "lesion_mask": None
            if self.lesion_mask is None
            else {
                "shape": list(self.lesion_mask.shape),
                "labels": sorted(int(v) for v in np.unique(self.lesion_mask.data) if v != 0),
                "file": self.lesion_mask.source,
            },
            "warnings": list(self.warnings),
        }
