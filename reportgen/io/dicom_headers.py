"""What a DICOM series is, read from its headers: sequence type, b-values, timing.

Kept apart from conversion so the rules can be read (and tested) on their own.
Every rule works on headers any vendor writes; private tags are only a fallback for
b-values, where each vendor has its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# Technical tags safe to copy into outputs (no names, IDs, dates, UIDs, institutions,
# free-text descriptions): PS3.15 Basic Profile keeps none of the identifying ones.
TECHNICAL_TAGS = (
    "Modality",
    "SeriesNumber",  # where the key images are on the PACS
    "Manufacturer",
    "ManufacturerModelName",
    "MagneticFieldStrength",
    "MRAcquisitionType",
    "ScanningSequence",
    "SequenceVariant",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ContrastBolusVolume",  # mL injected
    "ContrastBolusTotalDose",  # mL
    "KVP",  # CT tube voltage
    "ConvolutionKernel",  # CT reconstruction kernel
    "CTDIvol",  # mGy
)
# Gadolinium agents by generic name, recognised in the free text of Contrast/Bolus Agent
# (0018,0010), which PS3.15's Basic Profile blanks as free text: only the generic name of
# an agent recognised here is kept ("ContrastAgent"), never the text itself.
GADOLINIUM_AGENTS = {
    "gadoterate meglumine": re.compile(r"gadoter|dotarem|clariscan|artirem"),
    "gadobutrol": re.compile(r"gadobutrol|gadovist|gadavist"),
    "gadoteridol": re.compile(r"gadoteridol|prohance"),
    "gadobenate dimeglumine": re.compile(r"gadobenat|multihance"),
    "gadoxetate disodium": re.compile(r"gadoxet|primovist|eovist"),
    "gadopiclenol": re.compile(r"gadopiclenol|elucirem|vueway"),
    "gadodiamide": re.compile(r"gadodiamid|omniscan"),
    "gadopentetate dimeglumine": re.compile(r"gadopentet|magnevist"),
}
# Iodinated CT agents, kept the same way (generic name only)
IODINATED_AGENTS = {
    "iohexol": re.compile(r"iohexol|omnipa(?:q|c)ue"),
    "iopamidol": re.compile(r"iopamidol|isovue|iopamiro|solutrast|scanlux"),
    "iodixanol": re.compile(r"iodixanol|visipaque"),
    "iopromide": re.compile(r"iopromid|ultravist"),
    "ioversol": re.compile(r"ioversol|optiray"),
    "iomeprol": re.compile(r"iomeprol|iomeron|imeron"),
    "iobitridol": re.compile(r"iobitridol|xenetix"),
}
# Pancreas protocol timing after the start of injection (SAR/APA 2014 consensus: the
# pancreatic phase at 40-50 s, the portal venous phase at 65-70 s); acquisitions are
# placed by the nearer window, with a margin for bolus tracking's variable start.
CT_PHASE_WINDOWS_S = {"CT_PANC": (30.0, 58.0), "CT_PV": (58.0, 110.0)}
_CT_WORDS = (  # series description or protocol name -> phase, first match wins
    ("delayed", re.compile(r"delay|equilibri|excret|urogra|spät")),
    ("CT_PV", re.compile(r"portal|venous|\bpv\b|\bpvp\b|venös|venoes|\bven\b")),
    ("CT_PANC", re.compile(r"pancrea|arteri|\bart\b|\bpa\b|\bpancreatic\b")),
    (
        "CT_NC",
        re.compile(r"nativ|non.?contrast|unenhanced|plain|\bnc\b|ohne.?km|pre.?contrast|w/?o\b"),
    ),
)
_NO_AGENT = re.compile(r"^(?:none|no|nil|native|nativ|0)$")  # said, not left empty

_CALCULATED = re.compile(r"calc.?bval|calculated")
_KEYWORDS = {
    "ADC": re.compile(r"\badc\b|apparent.?diff"),
    "DWI": re.compile(r"dwi|diff|ep2d_?diff|trace|\bb ?\d{3,4}\b|resolve"),
    "DCE": re.compile(
        r"dce|dyn|vibe|thrive|lava|twist|\bt1.*(\+c|post|gd|contrast)|perf|kinetic|drive"
    ),
    "T2W": re.compile(r"t2(?!\*)|tse|fse|haste|space|blade|propeller"),
}


@dataclass
class SeriesGroup:
    """The files of one SeriesInstanceUID and their headers (read without pixel data)."""

    uid: str
    files: list[Path] = field(default_factory=list)
    headers: list[Dataset] = field(default_factory=list)

    @property
    def first(self) -> Dataset:
        return self.headers[0]

    @property
    def number(self) -> int:
        try:
            return int(self.first.get("SeriesNumber", 0) or 0)
        except (TypeError, ValueError):
            return 0

    @property
    def is_multiframe(self) -> bool:
        return int(self.first.get("NumberOfFrames", 1) or 1) > 1


NAMING_TAGS = (
    ("SeriesDescription", "series description"),
    ("ProtocolName", "protocol name"),
    ("SequenceName", "sequence name"),
)


def _named_in(ds: Dataset, pattern: re.Pattern) -> str | None:
    """Which of the naming tags matches `pattern` ("protocol name", ...), so a series'
    classification says where its name came from; None if none does."""
    for key, words in NAMING_TAGS:
        if pattern.search(str(ds.get(key, "") or "").lower()):
            return words
    return None


def _float(value: object) -> float | None:
    try:
        if isinstance(value, bytes):
            value = value.decode(errors="ignore").strip("\x00 ")
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def b_value(ds: Dataset) -> float | None:
    """The diffusion b-value of one image, from the standard tag or a vendor's private one."""
    if "DiffusionBValue" in ds:
        return _float(ds.DiffusionBValue)
    for seq_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(seq_kw, [])[:1]:
            for diff in item.get("MRDiffusionSequence", []):
                if "DiffusionBValue" in diff:
                    return _float(diff.DiffusionBValue)
    if (0x0019, 0x100C) in ds:  # Siemens B_value
        return _float(ds[0x0019, 0x100C].value)
    if (0x2001, 0x1003) in ds:  # Philips diffusion b-factor
        return _float(ds[0x2001, 0x1003].value)
    if (0x0043, 0x1039) in ds:  # GE slop_int_6: b-value, sometimes offset by 1e9
        raw = ds[0x0043, 0x1039].value
        first = _float(raw[0] if isinstance(raw, MultiValue | list | tuple) else raw)
        if first is not None:
            return first % 1e9 if first >= 1e9 else first
    return None


def is_calculated(ds: Dataset) -> bool:
    """A derived image computed from others (a calculated high b-value), not acquired."""
    image_type = " ".join(str(v).upper() for v in (ds.get("ImageType") or []))
    return "CALC_BVAL" in image_type or _named_in(ds, _CALCULATED) is not None


def temporal_key(ds: Dataset) -> tuple:
    """Order DCE phases: temporal position, then acquisition time, then series/instance number."""
    tpos = ds.get("TemporalPositionIdentifier")
    atime = str(ds.get("AcquisitionTime", "") or ds.get("ContentTime", "") or "")
    return (
        int(tpos) if tpos not in (None, "") else 10**6,
        atime,
        int(ds.get("SeriesNumber", 0) or 0),
        int(ds.get("AcquisitionNumber", 0) or 0),
    )


def ct_phase(group: SeriesGroup) -> tuple[str | None, str]:
    """Which phase a CT series is ("CT_NC", "CT_PANC", "CT_PV", "CT" when nothing
    establishes it, None for what is not read: localizers, delayed phases) and why.

    The series description or protocol name first (what the technologist chose), then
    the contrast headers: a named agent with the acquisition's seconds after the bolus
    start. Headers that contradict themselves (an agent "APPLIED" with a volume and dose
    of 0, as PET/CT exports write) establish nothing: the series is read as a CT of
    unknown phase, which no draft calls enhanced."""
    ds = group.first
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "LOCALIZER" in image_type or _named_in(ds, re.compile(r"topogram|scout|surview|localizer")):
        return None, "a localizer (topogram), not a volume"
    for phase, pattern in _CT_WORDS:
        if where := _named_in(ds, pattern):
            if phase == "delayed":
                return None, f"{where} names a delayed phase, not one a pancreas protocol reads"
            return phase, f"{where} names the {CT_PHASE_WORDS[phase]} phase"
    agent = str(ds.get("ContrastBolusAgent", "") or "").strip()
    if _NO_AGENT.match(agent.lower()):
        return "CT_NC", "Contrast/Bolus Agent says none"
    if not agent:
        return "CT", "no contrast agent in the headers and no phase in the series name"
    amounts = [_float(ds.get(k)) for k in ("ContrastBolusVolume", "ContrastBolusTotalDose")]
    if any(a is not None for a in amounts) and not any(a for a in amounts if a is not None):
        return "CT", "the headers name a contrast agent but a volume and dose of 0"
    start, acquired = (
        time_of_day(ds.get(k)) for k in ("ContrastBolusStartTime", "AcquisitionTime")
    )
    if start is None or acquired is None:
        return "CT", "a contrast agent, but no injection and acquisition times to place the phase"
    after = acquired - start
    for phase, (low, high) in CT_PHASE_WINDOWS_S.items():
        if low <= after < high:
            return phase, f"acquired {after:.0f} s after the bolus start"
    return (
        None if after >= 110 else "CT",
        f"acquired {after:.0f} s after the bolus start, outside the pancreatic and "
        "portal venous windows",
    )


CT_PHASE_WORDS = {
    "CT_NC": "non-contrast",
    "CT_PANC": "pancreatic",
    "CT_PV": "portal venous",
    "CT": "unknown",
}


def time_of_day(value: object) -> float | None:
    """A DICOM TM value (HHMMSS.frac) in seconds of the day; None if absent or malformed."""
    text = str(value or "").strip()
    try:
        return int(text[:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:] or 0)
    except ValueError:
        return None


def classify_series(group: SeriesGroup) -> tuple[str | None, str]:
    """Which protocol series it is ("T2W", "DWI", "ADC", "DCE", a CT phase, or None)
    and why."""
    ds = group.first
    if str(ds.get("Modality", "") or "").upper() == "CT":
        return ct_phase(group)
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "ADC" in image_type:
        return "ADC", "ImageType contains ADC"
    if where := _named_in(ds, _KEYWORDS["ADC"]):
        return "ADC", f"{where} names an ADC map"
    bvals = {b for b in (b_value(h) for h in group.headers) if b is not None}
    if any(b > 0 for b in bvals):
        return "DWI", f"diffusion b-values {sorted(int(b) for b in bvals)}"
    if "DIFFUSION" in image_type:
        return "DWI", "ImageType names diffusion"
    if where := _named_in(ds, _KEYWORDS["DWI"]):
        return "DWI", f"{where} names diffusion"
    if where := _named_in(ds, _KEYWORDS["DCE"]):
        return "DCE", f"{where} names a dynamic contrast series"
    has_contrast = any(str(h.get("ContrastBolusAgent", "") or "").strip() for h in group.headers)
    temporal = {h.get("TemporalPositionIdentifier") for h in group.headers} - {None, ""}
    if len(temporal) > 1 or (has_contrast and "T1" in " ".join(image_type)):
        return "DCE", "several temporal positions or contrast agent on a T1 series"
    if where := _named_in(ds, _KEYWORDS["T2W"]):
        return "T2W", f"{where} names a T2-weighted series"
    tr, te = _float(ds.get("RepetitionTime")), _float(ds.get("EchoTime"))
    scanning = ds.get("ScanningSequence") or ""
    scanning = scanning if isinstance(scanning, str) else " ".join(scanning)
    if tr and te and tr >= 1500 and te >= 60 and "IR" not in scanning:
        return "T2W", f"long TR/TE spin echo (TR {tr:g} ms, TE {te:g} ms)"
    return None, "headers do not identify a protocol sequence"


def contrast_agent(text: object) -> str | None:
    """The generic name of the gadolinium or iodinated agent a Contrast/Bolus Agent text
    names (None if it names none recognised)."""
    lowered = str(text or "").lower()
    agents = {**GADOLINIUM_AGENTS, **IODINATED_AGENTS}
    return next((name for name, rx in agents.items() if rx.search(lowered)), None)


def technical_info(ds: Dataset) -> dict:
    """Non-identifying acquisition parameters for the sidecar."""
    info: dict = {}
    if agent := contrast_agent(ds.get("ContrastBolusAgent")):
        info["ContrastAgent"] = agent
    for key in TECHNICAL_TAGS:
        value = ds.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, MultiValue | list | tuple):
            value = [str(v) for v in value]
        elif isinstance(value, int):
            value = int(value)
        else:
            number = _float(value)
            value = number if number is not None else str(value)
        info[key] = value
    return info


def sop_class(ds: Dataset) -> str:
    """The SOP class of an image (from its file meta where an anonymiser blanked the
    dataset's own), "" when neither names one."""
    found = str(ds.get("SOPClassUID", "") or "")
    meta = getattr(ds, "file_meta", None)
    return found or str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta else found


def series_key(ds: Dataset) -> str:
    """What groups an image with its series: the SeriesInstanceUID, or where an anonymiser
    blanked it (public CT collections do), the series' own geometry and naming: frame of
    reference, modality, number, description, matrix and orientation. "" for a file that
    names no series and has no image geometry."""
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    if uid or "ImagePositionPatient" not in ds or "Rows" not in ds:
        return uid
    orientation = [round(float(v), 3) for v in (ds.get("ImageOrientationPatient") or [])]
    parts = [
        str(ds.get(k, "") or "")
        for k in ("FrameOfReferenceUID", "StudyInstanceUID", "Modality", "SeriesNumber")
    ] + [str(ds.get("SeriesDescription", "") or ""), str(ds.Rows), str(ds.get("Columns"))]
    text = "\n".join([*parts, str(orientation)])
    return "unnamed-series-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def pseudonymous_study_id(groups: list[SeriesGroup]) -> str:
    """A stable id for a DICOM study that identifies nobody: a hash of its StudyInstanceUID
    (of its series' UIDs if it has none), never the folder's name or the PatientID, which
    in archive exports are often the patient's own."""
    uids = sorted({str(g.first.get("StudyInstanceUID", "") or "") for g in groups} - {""})
    return pseudonymous_uid_id(*(uids or sorted(g.uid for g in groups)))


def pseudonymous_uid_id(*uids: str) -> str:
    """The pseudonymous study id of a StudyInstanceUID (a PACS query gives only the UID)."""
    return "study-" + hashlib.sha256("\n".join(uids).encode()).hexdigest()[:16]
