"""DICOM folders: group series, name them from their headers, convert with dicom2nifti.

Conversion is never hand-built: dicom2nifti converts classic and single-file enhanced
series (its outputs agree with its own test suite's volumes), and SimpleITK reads
enhanced series stored one file per time point, which dicom2nifti reduces to the
first file. Nothing identifying leaves this module: the study id is chosen by the
caller, and only technical acquisition tags are kept.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from reportgen.errors import InputError
from reportgen.io.dicom_headers import (
    SeriesGroup,
    b_value,
    classify_series,
    is_calculated,
    pseudonymous_study_id,
    series_key,
    sop_class,
    technical_info,
    temporal_key,
    time_of_day,
)
from reportgen.io.nifti import as_volume, select_diffusion_volume
from reportgen.io.sequences import CT_NAMES, TARGET_B
from reportgen.io.study import Study, Volume

log = logging.getLogger(__name__)
# seconds after the pre-contrast phase the model's post-contrast phases stand for: the
# initial phase (peak within 2 min), then two delayed ones, as BI-RADS kinetics reads them
DCE_TARGETS_S = (90.0, 240.0, 390.0)
DCE_CHOICE_PREFIX = "dynamic phases chosen: "


NAMED_ON_COMMAND_LINE = "named on the command line"


@dataclass
class ConvertedSeries:
    """One converted volume (3D, or 4D for multi-b diffusion) and how it was named."""

    series_number: int
    kind: str | None  # "T2W" | "DWI" | "ADC" | "DCE" | None (unclassified)
    reason: str
    data: np.ndarray
    affine: np.ndarray
    order: tuple = ()
    bvals: list[float] | None = None
    info: dict = field(default_factory=dict)
    name: str | None = None  # canonical name, assigned once all series are known
    calculated: bool = False  # a b-value computed from others (CALC_BVAL), not acquired
    normal: tuple[float, float, float] | None = None  # the acquired slices' normal (LPS)
    # ContrastBolusStartTime in seconds of the day: only to time phases after injection,
    # never written out (a time of day, with the date, can point to a person)
    bolus_start_s: float | None = None
    series_uid: str = ""  # SeriesInstanceUID: a DICOM SR of the report references it

    @property
    def forced(self) -> bool:
        """Named on the command line (`--series N=TYPE`): wins over automatic choices."""
        return self.reason == NAMED_ON_COMMAND_LINE


@dataclass
class DicomConversion:
    converted: list[ConvertedSeries]
    skipped: list[tuple[int, str]]  # (series number, why)
    warnings: list[str]
    study_id: str = ""  # pseudonymous (`dicom_headers.pseudonymous_study_id`)
    groups: list[SeriesGroup] = field(default_factory=list)  # the headers, for study-level tags


def read_dicom(path: Path, headers_only: bool = False) -> pydicom.Dataset:
    """One DICOM file; files without the 128-byte preamble and "DICM" (Bruker ParaVision
    writes them) are read with `force=True`, then kept only if they name their series and
    SOP class, so arbitrary files never pass for images."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=headers_only)
    except InvalidDicomError:
        with warnings.catch_warnings():  # "expected implicit VR": the point of force=True
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(path, stop_before_pixels=headers_only, force=True)
        if "SeriesInstanceUID" not in ds or "SOPClassUID" not in ds:
            raise
        return ds


def _study_uid_of_first(files: list[Path]) -> str | None:
    for path in files:
        try:
            ds = read_dicom(path, headers_only=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError):
            continue
        if ds.get("StudyInstanceUID"):
            return str(ds.StudyInstanceUID)
        if series_key(ds) and sop_class(ds):  # an anonymiser blanked the study's UID:
            # its frame of reference, else its folder, so two such studies never merge
            return f"unnamed-study:{ds.get('FrameOfReferenceUID') or path.parent}"
    return None


def first_study_uid(folder: Path, tries: int = 50) -> str | None:
    """The StudyInstanceUID of the first DICOM file under `folder` (None if the first
    `tries` files hold none): enough to tell a study's series folders (one UID) from a
    folder of studies (several)."""
    return _study_uid_of_first(sorted(p for p in folder.rglob("*") if p.is_file())[:tries])


def holds_dicom(files: list[Path]) -> bool:
    """Whether any of `files` is a DICOM image of a study."""
    return _study_uid_of_first(files) is not None


NO_GEOMETRY = "no patient geometry (ImagePositionPatient/ImageOrientationPatient)"
_SCANNED: dict[Path, tuple[tuple, list[SeriesGroup]]] = {}


def scan_dicom_folder(folder: Path) -> list[SeriesGroup]:
    """Every DICOM header under a folder (no pixel data), grouped by series.

    Headers are read once per folder and kept while its files are unchanged (names, sizes,
    modification times), so the anatomy check on the headers, the conversion and the
    DICOM SR's references all share one read."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    fingerprint = tuple(
        (str(p), s.st_size, s.st_mtime_ns) for p, s in zip(files, stats, strict=True)
    )
    key = folder.resolve()
    cached = _SCANNED.get(key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    groups = _scan(folder, files)
    _SCANNED.clear()  # one folder at a time: a batch or a PACS watch moves on
    _SCANNED[key] = (fingerprint, groups)
    return groups


def _scan(folder: Path, files: list[Path]) -> list[SeriesGroup]:
    groups: dict[str, SeriesGroup] = {}
    for path in files:
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = read_dicom(path, headers_only=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError):
            continue
        uid = series_key(ds)
        if not uid or not sop_class(ds):
            continue
        group = groups.setdefault(uid, SeriesGroup(uid=uid))
        group.files.append(path)
        group.headers.append(ds)
    if not groups:
        raise InputError(folder, "no DICOM image files found")
    return sorted(groups.values(), key=lambda g: (g.number, g.uid))


def _has_geometry(ds: pydicom.Dataset) -> bool:
    if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
        return True
    for seq_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(seq_kw, [])[:1]:
            if "PlaneOrientationSequence" in item or "PlanePositionSequence" in item:
                return True
    return False


def _position(ds: pydicom.Dataset) -> tuple:
    return tuple(round(float(v), 2) for v in ds.get("ImagePositionPatient", []))


def _split_by_time(group: SeriesGroup) -> list[list[int]]:
    """Indices of the files of each volume, for a classic series holding several: one per
    b-value for a multi-b diffusion series (never by acquisition time: each of its slices
    carries its own), else one per time point."""
    if group.is_multiframe:
        return [list(range(len(group.files)))]
    by_b = defaultdict(list)
    for i, ds in enumerate(group.headers):
        by_b[b_value(ds)].append(i)

    def one_volume(indices: list[int]) -> bool:  # each slice position once
        where = [_position(group.headers[i]) for i in indices]
        return len(set(where)) == len(where)

    image_type = {str(v).upper() for v in (group.first.get("ImageType") or [])}
    trace = bool(image_type & {"TRACEW", "TRACE"}) or (
        str(group.first.get("DiffusionDirectionality", "")).upper() == "ISOTROPIC"
    )
    if trace and len(by_b) > 1 and None not in by_b and all(map(one_volume, by_b.values())):
        return [by_b[b] for b in sorted(by_b)]  # trace-weighted multi-b: a volume per b
    # (directional diffusion, as in DTI, stays one block: dicom2nifti reads b-values and
    # vectors, and `select_diffusion_volume` keeps the b nearest the model's)
    positions = defaultdict(list)
    for i, ds in enumerate(group.headers):
        positions[_position(ds)].append(i)
    if max(len(v) for v in positions.values()) <= 1:
        return [list(range(len(group.files)))]
    phases = defaultdict(list)
    for i, ds in enumerate(group.headers):
        phases[temporal_key(ds)[:2]].append(i)
    return [phases[key] for key in sorted(phases)]


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """dicom2nifti runs a full `gc.collect()` after every volume; with torch loaded that
    walks millions of objects (0.12 s each: 9.7 of the 13.5 s a 74-phase dynamic took to
    convert). Objects alive before the conversion are set aside from the collector while
    it runs, then handed back; what the conversion leaves is still collected."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _dicom2nifti(datasets: list[pydicom.Dataset]) -> tuple[nib.Nifti1Image, list[float] | None]:
    import dicom2nifti.convert_dicom as convert_dicom

    logging.getLogger("dicom2nifti").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="reportgen-dcm-") as tmp, _frozen_heap():
        out = Path(tmp) / "series.nii.gz"
        result = convert_dicom.dicom_array_to_nifti(datasets, str(out), reorient_nifti=True)
        loaded = nib.load(str(out))
        image = nib.Nifti1Image(np.asanyarray(loaded.dataobj), loaded.affine)
        bvals = (
            [float(b) for b in np.atleast_1d(result["BVAL"])]
            if result.get("BVAL") is not None
            else None
        )
    return image, bvals


def _simpleitk(path: Path) -> nib.Nifti1Image:
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory(prefix="reportgen-dcm-") as tmp:
        out = Path(tmp) / "frame.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(path)), str(out))
        loaded = nib.load(str(out))
        return nib.Nifti1Image(np.asanyarray(loaded.dataobj), loaded.affine)


def _convert_group(group: SeriesGroup, kind: str | None, reason: str) -> list[ConvertedSeries]:
    """Convert one series into one or more volumes (several for dynamic series), each
    knowing when the contrast was injected if the headers say."""
    volumes = _convert_group_volumes(group, kind, reason)
    bolus = time_of_day(group.first.get("ContrastBolusStartTime"))
    for vol in volumes:
        vol.bolus_start_s = bolus
        vol.series_uid = group.uid
    return volumes


def _convert_group_volumes(
    group: SeriesGroup, kind: str | None, reason: str
) -> list[ConvertedSeries]:
    if not _has_geometry(group.first):
        raise ValueError(NO_GEOMETRY)
    info = technical_info(group.first)
    calculated = is_calculated(group.first)
    normal = acquisition_normal(group.first)
    volumes: list[ConvertedSeries] = []
    if group.is_multiframe and len(group.files) > 1:
        # One enhanced file per time point: dicom2nifti would convert only the first.
        order = sorted(
            range(len(group.files)),
            key=lambda i: (temporal_key(group.headers[i]), group.files[i].name),
        )
        for rank, i in enumerate(order):
            image = _simpleitk(group.files[i])
            frames = int(group.headers[i].get("NumberOfFrames", 1))
            if image.shape[2] != frames:
                raise ValueError(
                    f"file {group.files[i].name}: {frames} frames read as {image.shape[2]} slices"
                )
            volumes.append(
                ConvertedSeries(
                    group.number,
                    kind,
                    reason,
                    np.asanyarray(image.dataobj),
                    image.affine,
                    (*temporal_key(group.headers[i]), rank),
                    info=info,
                    normal=normal,
                )
            )
        return volumes
    for rank, indices in enumerate(_split_by_time(group)):
        datasets = [read_dicom(group.files[i]) for i in indices]
        image, bvals = _dicom2nifti(datasets)
        data = np.asanyarray(image.dataobj)
        if data.ndim == 4 and not (kind == "DWI" and bvals):
            # Several volumes in one block (dynamic phases, echoes): each is its own volume.
            for t in range(data.shape[3]):
                volumes.append(
                    ConvertedSeries(
                        group.number,
                        kind,
                        reason,
                        data[..., t],
                        image.affine,
                        (*temporal_key(datasets[0]), rank, t),
                        info=info,
                        normal=normal,
                    )
                )
            continue
        if bvals is None and kind == "DWI":
            found = [b_value(ds) for ds in datasets]
            bvals = [found[0]] if len(set(found)) == 1 and found[0] is not None else None
        volumes.append(
            ConvertedSeries(
                group.number,
                kind,
                reason,
                data,
                image.affine,
                (*temporal_key(datasets[0]), rank),
                bvals=bvals,
                info=info,
                normal=normal,
                calculated=calculated,
            )
        )
    if kind == "DWI" and len(volumes) > 1 and not any(v.bvals for v in volumes):
        raise ValueError(
            f"{len(volumes)} diffusion volumes and no b-values in the headers, so which one "
            "is the model's b-value cannot be told; export the series with its b-values "
            "(DiffusionBValue), or name a single-b series DWI"
        )
    return volumes


def _dce_pre_first(volumes: list[ConvertedSeries]) -> list[ConvertedSeries]:
    return sorted(volumes, key=lambda v: v.order)


def _same_grid(a: ConvertedSeries, b: ConvertedSeries) -> bool:
    return a.data.shape[:3] == b.data.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-3)


def acquisition_normal(ds: pydicom.Dataset) -> tuple[float, float, float] | None:
    """The normal of the plane the slices were acquired in (converters reorient the voxel
    axes, so the plane is read from ImageOrientationPatient, not from the NIfTI)."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        for seq_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            for item in ds.get(seq_kw, [])[:1]:
                for plane in item.get("PlaneOrientationSequence", []):
                    iop = plane.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return tuple(float(v) for v in normal / (np.linalg.norm(normal) or 1.0))


def _axial(vol: ConvertedSeries) -> bool:
    return vol.normal is None or abs(vol.normal[2]) > 0.9


def _same_plane(a: ConvertedSeries, b: ConvertedSeries) -> bool:
    if a.normal is None or b.normal is None:
        return True
    return abs(float(np.dot(a.normal, b.normal))) > 0.9


def _b_distance(vol: ConvertedSeries) -> float:
    positive = [b for b in (vol.bvals or []) if b > 0]
    return min(abs(b - TARGET_B) for b in positive) if positive else 1e9


def _describe(vol: ConvertedSeries) -> str:
    b = f" (b={vol.bvals[0]:g})" if vol.bvals and len(vol.bvals) == 1 else ""
    return f"series {vol.series_number}{b}"


def _assign_names(converted: list[ConvertedSeries], warnings: list[str]) -> None:
    """Give each volume its canonical name; extra candidates for a name stay unclassified.

    A series named on the command line (`--series N=TYPE`) wins over every automatic
    choice. ADC: the largest. DWI: the ADC's own acquisition (same grid), acquired before
    calculated b-values, then the b-value nearest the model's. T2W: the plane the
    diffusion series use (axial in most protocols), then the most voxels."""
    by_kind: dict[str, list[ConvertedSeries]] = defaultdict(list)
    for vol in converted:
        if vol.kind:
            by_kind[vol.kind].append(vol)

    def pick(kind: str, key) -> ConvertedSeries | None:
        candidates = sorted(by_kind.get(kind, []), key=lambda v: (not v.forced, *key(v)))
        if not candidates:
            return None
        candidates[0].name = kind
        for extra in candidates[1:]:
            warnings.append(
                f"{_describe(extra)}: another {kind} candidate, not read "
                f"({kind} is {_describe(candidates[0])})"
            )
        return candidates[0]

    adc = pick("ADC", lambda v: (-int(np.prod(v.data.shape[:3])), v.series_number))
    dwi = pick(
        "DWI",
        lambda v: (
            adc is not None and not _same_grid(v, adc),
            v.calculated,
            _b_distance(v),
            v.series_number,
        ),
    )
    reference = adc or dwi
    pick(
        "T2W",
        lambda v: (
            reference is not None and not _same_plane(v, reference),
            -int(np.prod(v.data.shape[:3])),
            v.series_number,
        ),
    )
    for phase in CT_NAMES:  # CT: the axial reconstruction with the most voxels
        pick(phase, lambda v: (not _axial(v), -int(np.prod(v.data.shape[:3])), v.series_number))
    dynamic = _dynamic_series(by_kind.get("DCE", []), warnings)
    for phase, vol in enumerate(_model_phases(dynamic, warnings)):
        vol.name = f"DCE_{phase}"


def _flip(vol: ConvertedSeries) -> float | None:
    value = vol.info.get("FlipAngle")
    return round(float(value), 1) if isinstance(value, int | float) else None


def _dynamic_series(volumes: list[ConvertedSeries], warnings: list[str]) -> list:
    """The dynamic: one acquisition repeated in time, same grid and flip angle. Series at
    other flip angles on its grid (variable-flip-angle T1 mapping: 2, 5, 10, 20 degrees
    before the dynamic's 12) are not phases of it."""
    if not volumes:
        return []
    by_protocol: dict[tuple, list[ConvertedSeries]] = defaultdict(list)
    for vol in volumes:
        by_protocol[(_flip(vol), vol.data.shape[:3])].append(vol)
    main = max(by_protocol.values(), key=lambda g: (g[0].forced, len(g), -g[0].series_number))
    in_main = {id(v) for v in main}  # identity: volumes hold arrays, == would compare them
    for vol in volumes:
        if id(vol) not in in_main and not vol.forced:
            vol.kind = None
            vol.reason = (
                f"flip angle {_flip(vol)} deg against the dynamic's {_flip(main[0])}: "
                "a variable-flip-angle (T1 mapping) series, not a DCE phase"
            )
            warnings.append(f"series {vol.series_number}: {vol.reason}")
    return [v for v in volumes if id(v) in in_main or v.forced]


def _seconds(vol: ConvertedSeries) -> float | None:
    """Acquisition time of a phase in seconds of the day, if known."""
    return time_of_day(vol.order[1]) if len(vol.order) > 1 else None


def _phase_times(ordered: list[ConvertedSeries]) -> tuple[list[float], int, str]:
    """Each phase's seconds after the injection (ContrastBolusStartTime, when the headers
    give it and it falls within the dynamic), else after the first phase; the
    pre-contrast phase is the last one acquired before the injection (else the first)."""
    times = [_seconds(v) for v in ordered]
    if not all(t is not None for t in times):
        span = DCE_TARGETS_S[-1]
        return [float(i) / (len(ordered) - 1) * span for i in range(len(ordered))], 0, "the first"
    bolus = ordered[0].bolus_start_s
    if bolus is not None and times[0] <= bolus <= times[-1]:
        before = [i for i, t in enumerate(times) if t <= bolus]
        return [t - bolus for t in times], before[-1], "the injection (ContrastBolusStartTime)"
    return [t - times[0] for t in times], 0, "the first"


def dce_timing(converted: list[ConvertedSeries]) -> dict | None:
    """When the read DCE phases were acquired, as a report's technique states it: seconds
    after the injection where the headers give ContrastBolusStartTime within the dynamic,
    else after the first phase; None without DCE phases or their acquisition times."""
    named = sorted(
        (v for v in converted if v.name and v.name.startswith("DCE_")),
        key=lambda v: int(v.name.split("_")[1]),
    )
    if len(named) < 2 or any(_seconds(v) is None for v in named):
        return None
    after, _, since = _phase_times(named)
    return {
        "seconds": [round(t, 1) for t in after],
        "after": "injection" if since.startswith("the injection") else "first phase",
    }


def _model_phases(volumes: list[ConvertedSeries], warnings: list[str]) -> list:
    """The model's phases from a dynamic of any length: the pre-contrast phase, then the
    phases nearest `DCE_TARGETS_S` after the injection (`_phase_times`). The others are
    left unread, each with its time."""
    ordered = _dce_pre_first(volumes)
    wanted = len(DCE_TARGETS_S) + 1
    if len(ordered) <= wanted:
        return ordered
    after, pre, since = _phase_times(ordered)
    chosen = [pre]
    for target in DCE_TARGETS_S:
        free = [i for i in range(pre + 1, len(ordered)) if i not in chosen]
        if free:
            chosen.append(min(free, key=lambda i: abs(after[i] - target)))
    chosen.sort()
    for i, vol in enumerate(ordered):
        if i not in chosen:
            vol.kind = None
            vol.reason = f"dynamic phase {i} ({after[i]:.0f} s): not one of the model's phases"
    picked = ", ".join(f"phase {i} ({after[i]:.0f} s)" for i in chosen)
    warnings.append(
        f"{DCE_CHOICE_PREFIX}series {ordered[0].series_number} has {len(ordered)} phases; "
        f"DCE_0..DCE_{len(chosen) - 1} are {picked} after {since}"
    )
    return [ordered[i] for i in chosen]


DICOM2NIFTI_WORDS = {  # dicom2nifti's codes, in words (the code kept for searching)
    "TOO_FEW_SLICES/LOCALIZER": "too few slices for a volume, a localizer? (TOO_FEW_SLICES)",
    "IMAGE_ORIENTATION_INCONSISTENT": "slices in several orientations, a localizer? "
    "(IMAGE_ORIENTATION_INCONSISTENT)",
    "SLICE_INCREMENT_INCONSISTENT": "slices unevenly spaced or missing "
    "(SLICE_INCREMENT_INCONSISTENT)",
    "GANTRY_TILT": "acquired with gantry tilt, not resampled here (GANTRY_TILT)",
}


def _why(exc: Exception) -> str:
    """A conversion failure in words (the libraries' own text is often a bare tag)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, KeyError) or (text.startswith("(") and text.endswith(")")):
        return f"a header element the conversion needs is missing ({text.strip(chr(39))})"
    if text in DICOM2NIFTI_WORDS:
        return DICOM2NIFTI_WORDS[text]
    if isinstance(exc, AttributeError) and "'" in text:
        missing = text.rsplit("'", 2)[-2]
        return f"no {missing} in the headers: not a plain image series (a parametric map?)"
    return text or type(exc).__name__


def convert_dicom_folder(
    folder: Path, overrides: dict[int, str] | None = None, protocol_only: bool = False
) -> DicomConversion:
    """Convert every series under a folder (with `protocol_only`, only those the headers
    call a protocol sequence: what a draft reads); series not converted are listed with
    why, never hidden."""
    overrides = overrides or {}
    converted: list[ConvertedSeries] = []
    skipped: list[tuple[int, str]] = []
    warnings: list[str] = []
    groups = scan_dicom_folder(folder)
    studies = {str(g.first.get("StudyInstanceUID", "") or "") for g in groups} - {""}
    if len(studies) > 1:  # never a draft that mixes two patients' or two days' images
        raise InputError(
            folder,
            f"holds {len(studies)} DICOM studies; give one study's folder (or, to draft "
            "each, a folder of study folders with --out FOLDER)",
        )
    for group in groups:
        if group.number in overrides:
            kind, reason = overrides[group.number], NAMED_ON_COMMAND_LINE
        else:
            kind, reason = classify_series(group)
        if kind is None and protocol_only:  # said from its headers, without converting it
            unusable = not _has_geometry(group.first)
            skipped.append(
                (
                    group.number,
                    f"cannot be converted: {NO_GEOMETRY}"
                    if unusable
                    else f"not a protocol sequence ({reason}); not read",
                )
            )
            continue
        try:
            volumes = _convert_group(group, kind, reason)
        except Exception as exc:  # dicom2nifti/SimpleITK raise many types for unusable series
            if reason == NAMED_ON_COMMAND_LINE:  # the user asked for it: never drop it quietly
                raise InputError(
                    folder, f"series {group.number}, named {kind}, cannot be read: {_why(exc)}"
                ) from exc
            skipped.append((group.number, f"cannot be converted: {_why(exc)}"))
            continue
        for vol in volumes:
            if not np.any(vol.data):
                skipped.append((group.number, "a converted volume is all zeros; left out"))
            else:
                converted.append(vol)
    if not converted:
        detail = "; ".join(f"series {n}: {why}" for n, why in skipped) or "nothing to convert"
        raise InputError(folder, f"no DICOM series could be converted ({detail})")
    _assign_names(converted, warnings)
    return DicomConversion(converted, skipped, warnings, pseudonymous_study_id(groups), groups)


def read_dicom_study(folder: Path, study_id: str | None = None) -> Study:
    """A DICOM folder as a Study (no files written): only the series that can be one of
    the protocol's sequences are converted."""
    conversion = convert_dicom_folder(folder, protocol_only=True)
    warnings = list(conversion.warnings) + [f"series {n}: {why}" for n, why in conversion.skipped]
    sequences: dict[str, Volume] = {}
    metadata: dict = {"series": {}}
    unread: dict[int, list[str]] = defaultdict(list)  # one line per series, not per volume
    for vol in conversion.converted:
        if vol.name is None:
            if vol.kind is None:  # a losing candidate was already named in the warnings
                unread[vol.series_number].append(vol.reason)
            continue
        data = vol.data.astype(np.float32)
        src = Path(folder) / f"series-{vol.series_number}"
        bvals = vol.bvals
        if data.ndim == 4 and vol.name == "DWI" and vol.bvals:
            data, b = select_diffusion_volume(data, vol.bvals, src)
            bvals = [b]
        sequences[vol.name] = as_volume(data, vol.affine, src, vol.name, warnings)
        metadata["series"][vol.name] = {
            "series_number": vol.series_number,
            "reason": vol.reason,
            "series_uid": vol.series_uid,  # in memory only: a DICOM SR references it
        }
        if vol.name == "DWI" and bvals:  # with its series, and where the NIfTI reader
            metadata["series"]["DWI"]["b_value"] = bvals[0]  # keeps it (what drafts read)
            metadata.setdefault("b_value", {})["DWI"] = bvals[0]
        if vol.info:  # technical tags only (`technical_info`): a draft's technique
            metadata.setdefault("acquisition", {})[vol.name] = dict(vol.info)
    for number, reasons in unread.items():
        warnings.append(
            f"series {number}: not a protocol sequence ({reasons[0]}); ignored"
            if len(reasons) == 1
            else f"series {number}: {len(reasons)} volumes not read (the first: {reasons[0]})"
        )
    if not sequences:
        raise InputError(
            folder, "no series in this folder is a T2W, DWI, ADC or DCE sequence or a CT phase"
        )
    part = body_part(conversion.groups)
    choice = next((w for w in conversion.warnings if w.startswith(DCE_CHOICE_PREFIX)), None)
    if choice:  # the report says which phases of a long dynamic it read
        metadata["dce_phases"] = choice
    if part:  # a region, not an identifier: what the fitness check reads
        metadata["body_part"] = part
    if day := study_date(conversion.groups):  # what the report and the worklist date it by
        metadata["study_date"] = day
    timing = dce_timing(conversion.converted)
    if timing:  # seconds after the injection: a draft's technique
        metadata["dce_timing"] = timing
    return Study(
        study_id or conversion.study_id,
        sequences,
        str(folder),
        "dicom",
        warnings=warnings,
        metadata=metadata,
    )


# the series a SEG's frames are, in order of preference: the anatomy the boxes are drawn on
REFERENCE_SERIES = ("T2W", "CT_PANC", "CT_PV", "CT_NC", "CT")


def source_headers(study: Study) -> list[pydicom.Dataset]:
    """The headers (no pixels) of every DICOM image the study's sequences were read from,
    the series findings are outlined on first (`REFERENCE_SERIES`: T2W; a CT's
    pancreatic phase, else another phase): what a DICOM SR or SEG of its report
    references."""
    if study.form != "dicom":
        raise InputError(
            study.source,
            f"was read as {study.form}, not DICOM: a DICOM SR or SEG must reference the "
            "images it describes, so generate from the study's DICOM folder",
        )
    series = study.metadata.get("series", {})
    first = {name: k for k, name in enumerate(REFERENCE_SERIES)}
    names = sorted(series, key=lambda name: first.get(name, len(first)))
    order = {series[name]["series_uid"]: i for i, name in enumerate(names)}
    groups = [g for g in scan_dicom_folder(Path(study.source)) if g.uid in order]
    groups.sort(key=lambda g: order[g.uid])
    if not groups:
        raise InputError(study.source, "the series this study was read from are gone")
    return [h for g in groups for h in g.headers]


def body_part(groups: list[SeriesGroup]) -> str | None:
    """The series' BodyPartExamined (upper case; several joined by '+'), or None. A
    region, not an identifier: the fitness check reads it, and ingest keeps it."""
    parts = {
        str(h.get("BodyPartExamined", "") or "").strip().upper()
        for group in groups
        for h in group.headers[:1]
    } - {""}
    return "+".join(sorted(parts)) if parts else None


def study_date(groups: list[SeriesGroup]) -> str | None:
    """The day the study was done (ISO 8601) from its StudyDate, else the first series'
    SeriesDate or AcquisitionDate; None when none holds a real date (an anonymiser blanks
    them, or shifts them under PS3.15's Retain Longitudinal Temporal Information option).
    Read into the loaded study only: ingest's de-identified folders keep no date."""
    from datetime import date

    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate"):
        for group in groups:
            text = str(group.first.get(keyword, "") or "").strip()
            try:
                return date(int(text[:4]), int(text[4:6]), int(text[6:8])).isoformat()
            except ValueError:
                continue
    return None


def header_anatomy(folder: Path) -> tuple[str, str | None, str] | None:
    """(pseudonymous study id, BodyPartExamined, modality "CT" or "MR") from a DICOM
    folder's headers alone, for refusing a study of another region or modality before
    any series is converted; None when the folder holds no DICOM study (or several).
    A folder whose images are all CT is a CT study; any MR image makes it MR."""
    try:
        groups = scan_dicom_folder(folder)
    except InputError:
        return None
    studies = {str(g.first.get("StudyInstanceUID", "") or "") for g in groups} - {""}
    if len(studies) > 1:
        return None
    modalities = {str(g.first.get("Modality", "") or "").upper() for g in groups}
    return pseudonymous_study_id(groups), body_part(groups), "CT" if modalities == {"CT"} else "MR"
