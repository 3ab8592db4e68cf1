"""`reportgen synth`: a dataset of phantom studies with ground truth, deterministic by seed.

Each study draws from its own random stream, seeded by (seed, domain, index), so the
bytes written do not depend on worker count or scheduling. Output: one study folder
per study (per-sequence NIfTI, lesion mask, ground-truth report JSON, English and
Chinese free text) and `manifest.jsonl`, written last and atomically.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reportgen import NOT_FOR_CLINICAL_USE
from reportgen.errors import ConfigError, InputError
from reportgen.io.write import nifti_image, save_nifti
from reportgen.parallel import parallel_map
from reportgen.report import build_report, load_template
from reportgen.report.schema import Provenance, StudyRef
from reportgen.synth import breast, gynae, ovary, pancreas
from reportgen.synth.acquisition import PROTOCOLS, sample_acquisition
from reportgen.synth.ct import image_phases, sample_ct_acquisition
from reportgen.synth.mri import acquire_series, save_int16, synthesise_sequences
from reportgen.synth.text import free_text

DOMAINS = {
    "breast": "birads_mri",
    "cervix": "figo_cervix_2018",
    "endometrium": "figo_endometrium_2023",
    "ovary": "orads_mri",
    "pancreas": "pancreas_ct",
}
CT_DOMAINS = frozenset({"pancreas"})
SYNTH_NOTICE = "Synthetic phantom with known ground truth. " + NOT_FOR_CLINICAL_USE
# Each domain's default acquisition: breast MRI as the ACR Breast MRI Accreditation
# Program requires it (docs/phantoms.md); the pelvic phantoms have one protocol.
PROTOCOL_OF = {"breast": "clinical", "pancreas": "ct"}


@dataclass(frozen=True)
class SynthOptions:
    domain: str
    seed: int = 0
    shift: str | None = None
    malignant_fraction: float = 0.3
    inadequate_fraction: float = 0.01
    # `reportgen.synth.acquisition.PROTOCOLS`: "clinical" (breast only) writes each series
    # on its own grid at clinical resolution, as an accredited breast protocol acquires it;
    # "low_resolution" puts every series on one 2.6 mm grid (fast tests, a shift, what the
    # bundled 2 mm report model was trained on). None: the domain's own (`PROTOCOL_OF`).
    protocol: str | None = None

    def __post_init__(self) -> None:
        if self.protocol is None:
            object.__setattr__(self, "protocol", PROTOCOL_OF.get(self.domain, "low_resolution"))


def study_rng(options: SynthOptions, index: int) -> np.random.Generator:
    return np.random.default_rng([options.seed, zlib.crc32(options.domain.encode()), index])


def _breast(rng: np.random.Generator, options: SynthOptions):
    case = breast.sample_case(rng, options.malignant_fraction)
    inadequate = bool(rng.random() < options.inadequate_fraction)
    acq = sample_acquisition(rng, "breast", options.shift, inadequate, options.protocol)
    canvas = breast.render(case, acq, rng)
    fields = dict(case.fields)
    if inadequate:
        fields["technically_adequate"] = False
    findings, lesions = [], []
    for lesion in case.lesions:
        if not np.any(canvas.labels == lesion.label):
            continue  # could not be placed on this grid: not part of the truth
        values = dict(lesion.fields)
        values["size_mm"] = round(lesion.size_mm)
        findings.append(values)
        lesions.append(
            {
                "label": lesion.label,
                "pathology": lesion.pathology,
                "subtype": lesion.subtype,
                "size_mm_exact": round(lesion.size_mm, 2),
                "centre_mm": [round(float(c), 2) for c in lesion.centre],
            }
        )
    labels = {str(les["label"]): f"finding {i + 1}" for i, les in enumerate(lesions)}
    return acq, canvas, fields, findings, {"lesions": lesions, "labels": labels}


def _gynae(rng: np.random.Generator, options: SynthOptions):
    case = gynae.sample_cervix(rng) if options.domain == "cervix" else gynae.sample_endometrium(rng)
    acq = sample_acquisition(rng, options.domain, options.shift)
    render = gynae.render_cervix if options.domain == "cervix" else gynae.render_endometrium
    canvas = render(case, acq, rng)
    gynae.nodes_in_view(case, canvas)
    tumour = dict(case.tumour)
    tumour["size_mm"] = round(case.size_mm)
    extra = {
        "lesions": [
            {
                "label": gynae.PRIMARY,
                "pathology": "malignant",
                "subtype": f"{options.domain}_carcinoma",
                "size_mm_exact": round(case.size_mm, 2),
            }
        ],
        "labels": {
            str(gynae.PRIMARY): "primary tumour",
            str(gynae.EXTENSION): "tumour extension",
            str(gynae.NODES): "metastatic lymph node",
        },
        # anatomy, not tumour: no finding's extent, outlined for what it shows (hydronephrosis)
        "anatomy_labels": {"dilated_ureter": gynae.DILATED_URETER}
        if "hydronephrosis" in case.fields
        else {},
        "details": case.details,
    }
    return acq, canvas, dict(case.fields), [tumour], extra


def _ovary(rng: np.random.Generator, options: SynthOptions):
    case = ovary.sample_ovary(rng, options.malignant_fraction)
    acq = sample_acquisition(rng, "ovary", options.shift)
    canvas = ovary.render_ovary(case, acq, rng)
    shown = ovary.visible_truth(case, canvas)
    findings, lesions = [], []
    for lesion in shown:
        findings.append({**lesion.fields, "size_mm": round(lesion.size_mm)})
        part = lesion.label + ovary.SOLID_PART
        lesions.append(
            {
                "label": lesion.label,
                "parts": [part] if np.any(canvas.labels == part) else [],
                "pathology": ovary.pathology(lesion),
                "subtype": lesion.kind,
                "size_mm_exact": round(lesion.size_mm, 2),
                "centre_mm": [round(float(c), 2) for c in lesion.centre],
            }
        )
    labels = {str(les["label"]): f"finding {i + 1}" for i, les in enumerate(lesions)}
    for i, les in enumerate(lesions):
        labels |= {str(p): f"finding {i + 1}: solid tissue" for p in les["parts"]}
    labels[str(ovary.IMPLANTS)] = "peritoneal implants"
    return acq, canvas, dict(case.fields), findings, {"lesions": lesions, "labels": labels}


def _pancreas(rng: np.random.Generator, options: SynthOptions):
    case = pancreas.sample_case(rng)
    acq = sample_ct_acquisition(rng, options.shift)
    canvas = pancreas.render(case, acq.grid())
    findings, lesions = [], []
    for lesion in case.lesions:
        if not np.any(canvas.labels == lesion.label):
            continue  # outside this field of view: not part of the truth
        findings.append({**lesion.fields, "size_mm": round(lesion.size_mm)})
        lesions.append(
            {
                "label": lesion.label,
                "pathology": "malignant" if lesion.kind == "pdac" else "benign",
                "subtype": "ductal_adenocarcinoma" if lesion.kind == "pdac" else "cystic_lesion",
                "size_mm_exact": round(lesion.size_mm, 2),
                "centre_mm": [
                    round(float(c), 2) for c in lesion.centre * case.scale + case.shift_mm
                ],
                "contact_degrees": {k: round(v, 1) for k, v in lesion.contact_deg.items()},
            }
        )
    labels = {str(les["label"]): f"finding {i + 1}" for i, les in enumerate(lesions)}
    extra = {
        "lesions": lesions,
        "labels": labels,
        "anatomy_labels": dict(pancreas.ANATOMY_LABELS),
        "details": case.details,
    }
    return acq, canvas, dict(case.fields), findings, extra


SAMPLERS: dict[str, Callable] = {
    "breast": _breast,
    "cervix": _gynae,
    "endometrium": _gynae,
    "ovary": _ovary,
    "pancreas": _pancreas,
}


def synth_one(options: SynthOptions, index: int, out_dir: Path) -> dict:
    """Make, write and describe one study."""
    rng = study_rng(options, index)
    acq, canvas, fields, findings, extra = SAMPLERS[options.domain](rng, options)
    if options.domain in CT_DOMAINS:  # one grid, every phase in HU
        phases = {name: k for k, name in enumerate(pancreas.PHASES)}
        series = {
            name: (image, canvas.grid.affine)
            for name, image in image_phases(canvas, acq, rng, phases).items()
        }
    else:
        series = acquire_series(synthesise_sequences(canvas, acq, rng), canvas.grid, acq)
    images = {name: image for name, (image, _) in series.items()}
    template = load_template(DOMAINS[options.domain])
    study_id = f"{options.domain}-s{options.seed}-{index:05d}"
    report = build_report(
        template,
        fields,
        findings,
        study=StudyRef(study_id=study_id, sequences_used=list(images), sequences_missing=[]),
        provenance=Provenance(
            source="synthetic", model_name="reportgen.synth", created_at="1970-01-01T00:00:00+00:00"
        ),
        notice=SYNTH_NOTICE,
    )
    if not report.validation.valid:  # the generator must only ever write valid truth
        raise RuntimeError(f"{study_id}: synthetic truth is invalid: {report.validation.problems}")
    folder = out_dir / study_id
    folder.mkdir(parents=True, exist_ok=True)
    for name, (image, affine) in series.items():
        physical = name == "ADC" or options.domain in CT_DOMAINS  # ADC and HU as they are
        save_int16(image, affine, folder / f"{name}.nii.gz", physical=physical)
    mask = nifti_image(canvas.labels.astype(np.uint8), canvas.grid.affine)
    save_nifti(mask, folder / "lesion_mask.nii.gz")
    (folder / "study.json").write_text(
        json.dumps({"study_id": study_id, "synthetic": True, "notice": SYNTH_NOTICE}, indent=2)
    )
    (folder / "report.json").write_text(report.to_json())
    texts = {lang: free_text(report, template, lang, rng) for lang in ("en", "zh")}
    for lang, text in texts.items():
        (folder / f"report_{lang}.txt").write_text(text + "\n", encoding="utf-8")
    return {
        "id": study_id,
        "domain": options.domain,
        "template": template.id,
        "seed": options.seed,
        "index": index,
        "dir": study_id,
        "sequences": {name: f"{study_id}/{name}.nii.gz" for name in images},
        "mask": f"{study_id}/lesion_mask.nii.gz",
        "mask_labels": extra["labels"],
        "report": json.loads(report.to_json(indent=None)),
        "text": texts,
        "truth": {k: v for k, v in extra.items() if k != "labels"},
        "acquisition": acq.to_dict(),
    }


def _worker(args: tuple[SynthOptions, list[int], str]) -> list[dict]:
    options, indices, out = args
    return [synth_one(options, i, Path(out)) for i in indices]


def synth_dataset(
    out_dir: Path,
    n: int,
    options: SynthOptions,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write n studies and the manifest; returns the manifest path."""
    if options.domain not in DOMAINS:
        raise ConfigError(f"unknown domain {options.domain!r}; choose from {', '.join(DOMAINS)}")
    if n < 1:
        raise ConfigError("--n must be at least 1")
    if options.shift not in (None, "scanner"):
        raise ConfigError(f"unknown --shift {options.shift!r}; the only shift is 'scanner'")
    if (options.domain in CT_DOMAINS) != (options.protocol == "ct"):
        raise ConfigError(
            "--protocol names an MRI acquisition; the pancreas phantoms are CT"
            if options.domain in CT_DOMAINS
            else "--protocol ct is the pancreas phantoms' CT acquisition"
        )
    if options.protocol not in (*PROTOCOLS, "ct"):
        raise ConfigError(
            f"unknown --protocol {options.protocol!r}; choose from {', '.join(PROTOCOLS)}"
        )
    if options.protocol == "clinical" and options.domain != "breast":
        raise ConfigError(
            "--protocol clinical is the breast protocol; pelvic phantoms are low_resolution"
        )
    if not 0.0 <= options.malignant_fraction <= 1.0:
        raise ConfigError("--malignant-fraction must be between 0 and 1")
    manifest = out_dir / "manifest.jsonl"
    if manifest.exists():
        raise InputError(out_dir, "already holds a manifest.jsonl; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    chunk = max(1, min(8, n // (workers * 4) or 1))
    jobs = [(options, list(range(i, min(i + chunk, n))), str(out_dir)) for i in range(0, n, chunk)]
    rows: list[dict] = []
    for result in parallel_map(_worker, jobs, workers):
        rows.extend(result)
        if progress:
            progress(len(result))
    rows.sort(key=lambda r: r["index"])
    tmp = manifest.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(manifest)
    return manifest
