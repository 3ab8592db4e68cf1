"""A draft's technique: how each sequence of the study was acquired, as a report states it.

Radiology reports open with the technique (field strength, sequences, slice thickness,
b-values, contrast phases). Geometry comes from each volume's affine (in-plane pixel and
slice thickness, the slice axis taken as the coarsest); field strength, b-value and the
DCE phases' seconds after the injection come from what the study's reader kept of the
DICOM headers or the NIfTI sidecars (`Study.metadata`: technical tags and relative times
only, never a time of day). A value no header gave is left out, never guessed.
"""

from __future__ import annotations

from reportgen.io.sequences import CT_NAMES, PROTOCOL, sequence_family
from reportgen.io.study import Study
from reportgen.report.schema import SeriesTechnique

FIELD_STRENGTH_TAG = "MagneticFieldStrength"


def _geometry(spacing: tuple[float, float, float]) -> tuple[tuple[float, float], float]:
    ordered = sorted(float(s) for s in spacing)
    return (round(ordered[0], 2), round(ordered[1], 2)), round(ordered[2], 2)


def _b_value(study: Study, name: str) -> float | None:
    value = study.metadata.get("b_value", {}).get(name)
    return float(value) if value is not None else None


def _field_strength(study: Study, name: str) -> float | None:
    value = study.metadata.get("acquisition", {}).get(name, {}).get(FIELD_STRENGTH_TAG)
    try:
        return round(float(value), 2) if value is not None else None
    except (TypeError, ValueError):
        return None


def _contrast(study: Study, phases: list[str]) -> tuple[str | None, float | None]:
    """The agent and the volume injected, from the first phase whose headers give each."""
    agent, volume = None, None
    for name in phases:
        info = study.metadata.get("acquisition", {}).get(name, {})
        agent = agent or info.get("ContrastAgent")
        for key in ("ContrastBolusVolume", "ContrastBolusTotalDose"):
            value = info.get(key)
            if volume is None and isinstance(value, int | float) and value > 0:
                volume = round(float(value), 1)
    return agent, volume


def study_technique(study: Study) -> list[SeriesTechnique]:
    """One entry per sequence the study holds, in protocol order; the DCE phases as one;
    a CT's phases each its own (an enhanced phase with the agent and volume its headers
    give)."""
    out: list[SeriesTechnique] = []
    for name in CT_NAMES:
        if name in study.sequences:
            in_plane, slice_mm = _geometry(study.sequences[name].spacing)
            enhanced = name in ("CT_PANC", "CT_PV")
            agent, volume = _contrast(study, [name]) if enhanced else (None, None)
            out.append(
                SeriesTechnique(
                    sequence=name,
                    in_plane_mm=in_plane,
                    slice_mm=slice_mm,
                    contrast_agent=agent,
                    contrast_volume_ml=volume,
                )
            )
    dce = [n for n in study.sequences if sequence_family(n) == "dce"]
    for name in PROTOCOL:
        if name not in study.sequences or (sequence_family(name) == "dce" and name != dce[0]):
            continue
        in_plane, slice_mm = _geometry(study.sequences[name].spacing)
        is_dce = sequence_family(name) == "dce"
        timing = study.metadata.get("dce_timing") if is_dce else None
        timed = isinstance(timing, dict) and len(timing.get("seconds", [])) == len(dce)
        agent, volume = _contrast(study, dce) if is_dce else (None, None)
        out.append(
            SeriesTechnique(
                sequence="DCE" if is_dce else name,
                in_plane_mm=in_plane,
                slice_mm=slice_mm,
                field_strength_t=_field_strength(study, name),
                b_value=_b_value(study, name),
                phases=len(dce) if is_dce else None,
                phase_times_s=[float(t) for t in timing["seconds"]] if timed else None,
                timed_from=str(timing.get("after")) if timed else None,
                contrast_agent=agent,
                contrast_volume_ml=volume,
            )
        )
    return out


def field_strength(technique: list[SeriesTechnique]) -> float | None:
    """The study's field strength where its series agree on one."""
    found = {t.field_strength_t for t in technique if t.field_strength_t is not None}
    return found.pop() if len(found) == 1 else None
