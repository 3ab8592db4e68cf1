"""Canonical series names (MRI sequences, CT phases) and the aliases real files use.

A study's series are named by one vocabulary everywhere (loader, model, reports):
MRI T2W, DWI, ADC and DCE_0..DCE_n (DCE_0 is pre-contrast); CT by contrast phase,
CT_NC (non-contrast), CT_PANC (pancreatic, late arterial), CT_PV (portal venous) and
CT (a CT whose phase nothing establishes: read as if without contrast, never assumed
enhanced). File names, BIDS-like suffixes and sidecars map onto it here and nowhere else.
"""

from __future__ import annotations

import re

from pretrain_mae.config import DEFAULT_SEQUENCES

# The protocol the bundled models expect, in token order. Anything absent is "missing".
# the diffusion b-value (s/mm^2) the models are trained on; a multi-b series gives this one
TARGET_B = 800.0
PROTOCOL: tuple[str, ...] = DEFAULT_SEQUENCES  # one list: the models read these, in this order
MAX_DCE_PHASES = 10
# CT phases of a pancreas protocol (SAR/APA 2014: pancreatic phase 40-50 s, portal venous
# 65-70 s after injection); "missing" for a CT study is counted against this list
CT_PROTOCOL: tuple[str, ...] = ("CT_PANC", "CT_PV")
CT_NAMES: tuple[str, ...] = ("CT_NC", "CT_PANC", "CT_PV", "CT")

_ALIASES = {
    "T2W": {"t2w", "t2", "t2wi", "t2tse", "t2fse", "t2weighted", "t2ax", "axt2", "t2space"},
    "DWI": {"dwi", "dw", "diffusion", "trace", "dwitrace", "b800", "b1000", "dwib800", "dwib1000"},
    "ADC": {"adc", "adcmap", "apparentdiffusioncoefficient"},
    "CT_NC": {"ctnc", "ctnative", "ctplain", "ctnoncontrast", "ctunenhanced", "ctpre"},
    "CT_PANC": {"ctpanc", "ctpancreatic", "ctart", "ctarterial", "ctlatearterial", "ctpa"},
    "CT_PV": {"ctpv", "ctportal", "ctportalvenous", "ctvenous", "ctpvp"},
    "CT": {"ct"},
}
_DCE_RE = re.compile(r"^(?:dce|dyn|dynamic|t1dce|t1dyn)(?:phase|ph|run|t)?(\d{1,2})$")
_MASK_TOKENS = ("lesionmask", "mask", "dseg", "seg", "label", "roi")


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def canonical_sequence_name(name: str) -> str | None:
    """Map a sequence name as users write it ("t2_tse", "DCE-1", "dwi") to PROTOCOL's form."""
    key = _squash(name)
    for canonical, aliases in _ALIASES.items():
        if key in aliases:
            return canonical
    match = _DCE_RE.match(key)
    if match and int(match.group(1)) < MAX_DCE_PHASES:
        return f"DCE_{int(match.group(1))}"
    return None


NIFTI_SUFFIXES = (".nii.gz", ".nii")
# research formats (3D Slicer, ITK-SNAP) read through SimpleITK with the same checks
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES


def is_image_file(path_or_name) -> bool:
    """A file `load_study` reads as one image: NIfTI, NRRD or MetaImage."""
    return str(getattr(path_or_name, "name", path_or_name)).lower().endswith(IMAGE_SUFFIXES)


def strip_nifti_suffix(filename: str) -> str:
    """The file name without its image suffix (NIfTI, NRRD or MetaImage)."""
    for suffix in IMAGE_SUFFIXES:
        if filename.lower().endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def is_mask_name(stem: str) -> bool:
    tokens = [_squash(t) for t in re.split(r"[_\-.]", stem)]
    joined = _squash(stem)
    return joined.endswith("lesionmask") or any(t in _MASK_TOKENS for t in tokens[-2:])


def sequence_from_filename(filename: str) -> str | None:
    """Name the sequence a NIfTI file holds from its file name.

    Accepts plain names (``T2W.nii.gz``, ``DCE_1.nii.gz``) and BIDS-like ones
    (``sub-01_T2w.nii.gz``, ``sub-01_acq-b800_dwi.nii.gz``, ``sub-01_phase-2_dce.nii.gz``).
    """
    stem = strip_nifti_suffix(filename)
    direct = canonical_sequence_name(stem)
    if direct:
        return direct
    parts = stem.split("_")
    entities = dict(p.split("-", 1) for p in parts if "-" in p and not p.startswith("-"))
    plain = [p for p in parts if "-" not in p]
    # Try the last one or two plain tokens ("..._T2w", "..._DCE_1").
    for candidate in (plain[-1:], plain[-2:]):
        if candidate:
            name = canonical_sequence_name("_".join(candidate))
            if name:
                return name
    if plain and _squash(plain[-1]) in {"dce", "dyn", "dynamic"}:
        for key in ("phase", "run", "echo", "t"):
            if key in entities and entities[key].isdigit():
                return canonical_sequence_name(f"DCE_{int(entities[key])}")
    return None


def protocol_order(names: list[str]) -> list[str]:
    """Sort canonical names in token order (extra DCE phases after DCE_3, CT phases by
    time after injection)."""

    def key(name: str) -> tuple[int, int]:
        if name in PROTOCOL:
            return (PROTOCOL.index(name), 0)
        if name.startswith("DCE_"):
            return (len(PROTOCOL), int(name[4:]))
        if name in CT_NAMES:
            return (len(PROTOCOL) + 1, CT_NAMES.index(name))
        return (len(PROTOCOL) + 2, 0)

    return sorted(names, key=key)


SEQUENCE_FAMILIES = ("t2", "diffusion", "dce", "ct", "ct_contrast")


def family_groups(names: list[str] | tuple[str, ...]) -> list[list[int]]:
    """Indices of `names` by family (every DCE phase together, DWI with ADC, ...)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        family = sequence_family(name)
        if family is not None:
            groups.setdefault(family, []).append(i)
    return list(groups.values())


def sequence_family(name: str) -> str | None:
    """Which kind of image a canonical sequence is: what a report field can be read from
    (a template field `requires` families; without them it is not assessable)."""
    if name == "T2W":
        return "t2"
    if name in ("DWI", "ADC"):
        return "diffusion"
    if name.startswith("DCE_"):
        return "dce"
    if name in ("CT_PANC", "CT_PV"):
        return "ct_contrast"  # (`acquired_families` adds "ct" for every CT phase)
    if name in ("CT_NC", "CT"):
        return "ct"
    return None


def modality_of(names) -> str:
    """ "CT" when a study's series are CT phases, else "MR": models, gates and reports are
    per modality, and no MRI reader is ever given a CT."""
    names = list(names)
    return "CT" if names and all(n in CT_NAMES for n in names) else "MR"
