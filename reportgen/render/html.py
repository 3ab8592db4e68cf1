"""A printable report: one self-contained HTML page (and PDF through Chromium).

What a referring clinician prints or files states everything once: the not-for-clinical-
use notice as a banner, the narrative (as `render_text` writes it, without its own title
and notice), the validation problems, and for each finding a key image: the axial T2W
slice through the finding's box with the box drawn, in radiological convention (the
patient's right on the viewer's left, anterior up). The structured table, in preferred
terms, is folded away on screen and not printed: it says what the narrative says.
Images are embedded as data URIs, so the page is one file; every piece of text is
HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ontology.concepts import ConceptTable, default_concepts
from reportgen.errors import ConfigError
from reportgen.io import Study
from reportgen.io.write import replaced_privately
from reportgen.render.curves import cjk_font, curve_png, phase_seconds, relative_enhancement
from reportgen.render.key_images import (
    CT_PRESETS,
    box_corner_voxels,
    canonical,
    enlarged,
    mark_sides,
    radiological,
    window,
)
from reportgen.render.notes import check_note, notice_text, problem_text, signed_problems
from reportgen.render.text import measured_text, render_text
from reportgen.report.schema import Box, Finding, Report, Value
from reportgen.report.template import FieldSpec, Template, load_template

WORDS = {
    "en": {"field": "Item", "value": "Value", "finding": "Finding", "yes": "yes", "no": "no",
           "problems": "Validation", "images": "Key images", "report": "Structured report",
           "narrative": "Report", "slice": "axial T2W through the finding; box: the outline",
           "model": "Drafted by", "measured": "Measured on the images",
           "subtraction": "early subtraction (first post-contrast minus pre-contrast) through "
                          "the finding; box: the outline",
           "ct_pancreatic": "axial pancreatic phase through the finding, pancreas window "
                            "(W 300, L 80); box: the outline",
           "ct_portal": "axial portal venous phase through the finding, abdominal window "
                        "(W 400, L 40); box: the outline",
           "ct_plain": "axial CT through the finding, abdominal window (W 400, L 40); box: "
                       "the outline",
           "curve": "time-intensity curve of the box's most-enhancing half",
           "since": {"injection": "injection", "first phase": "first phase"},
           "curve_axes": {"seconds": "seconds after the {since}", "phase": "DCE phase",
                          "enhancement": "relative enhancement (%)"}},
    "zh": {"field": "项目", "value": "结果", "finding": "病灶", "yes": "是", "no": "否",
           "problems": "校验", "images": "关键图像", "report": "结构化报告",
           "narrative": "报告", "slice": "经病灶的轴位T2W；方框：勾画范围",
           "model": "生成模型", "measured": "图像测量",
           "subtraction": "经病灶的早期减影（首个增强期减平扫）；方框：勾画范围",
           "ct_pancreatic": "经病灶的轴位胰腺期，胰腺窗（窗宽300，窗位80）；方框：勾画范围",
           "ct_portal": "经病灶的轴位门静脉期，腹部窗（窗宽400，窗位40）；方框：勾画范围",
           "ct_plain": "经病灶的轴位CT，腹部窗（窗宽400，窗位40）；方框：勾画范围",
           "curve": "方框内强化最明显一半的时间-信号强度曲线",
           "since": {"injection": "注射", "first phase": "首个期相"},
           "curve_axes": {"seconds": "{since}后秒数", "phase": "DCE期相",
                          "enhancement": "相对强化率（%）"}},
}  # fmt: skip
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 52em; color: #111; }
.notice { border: 3px solid #b00; background: #fee; color: #700; padding: .6em 1em;
          font-weight: 600; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; border-bottom: 1px solid #aaa; }
.narrative { white-space: pre-wrap; }
table { border-collapse: collapse; width: 100%; }
td, th { border: 1px solid #bbb; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #eee; } tr.finding th { background: #dde6f0; }
figure { display: inline-block; margin: .5em 1em .5em 0; } figure img { width: 320px; }
figcaption { font-size: 12px; color: #444; } .warning { color: #850; } .error { color: #b00; }
tr.check td { background: #fff4d6; } .check-note { color: #850; font-weight: bold; }
summary { font-weight: 600; margin: .8em 0 .4em; cursor: pointer; }
@media print { .notice { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
               figure { break-inside: avoid; } details.structured { display: none; } }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _value_text(spec: FieldSpec, value: Value, concepts: ConceptTable, lang: str) -> str:
    if spec.type == "enum":
        return concepts[str(value.value)].pref(lang)
    if spec.type == "bool":
        return WORDS[lang]["yes" if value.value else "no"]
    if spec.type == "number":
        return f"{value.value:g} {spec.unit or ''}".strip()
    return str(value.value)


def _rows(
    values: dict[str, Value], report: Report, template: Template, concepts, lang: str
) -> list[str]:
    rows = []
    for key, value in values.items():
        spec = template.field(key)
        label = concepts[spec.concept].pref(lang)
        shown = _esc(_value_text(spec, value, concepts, lang))
        note = check_note(value, report, lang)
        if note:  # what the reader should check, beside the value itself
            rows.append(
                f'<tr class="check"><td>{_esc(label)}</td>'
                f'<td>{shown} <span class="check-note">{_esc(note)}</span></td></tr>'
            )
        else:
            rows.append(f"<tr><td>{_esc(label)}</td><td>{shown}</td></tr>")
    return rows


def _derived_rows(values: dict[str, Value], template: Template, concepts, lang) -> list[str]:
    return [
        f"<tr><td><b>{_esc(concepts[template.derived(k).concept].pref(lang))}</b></td>"
        f"<td><b>{_esc(concepts[str(v.value)].pref(lang))}</b></td></tr>"
        for k, v in values.items()
    ]


def key_image_png(
    data: np.ndarray,
    affine: np.ndarray,
    box: Box,
    signed: bool = False,
    preset: str | None = None,
) -> bytes | None:
    """The axial slice of a volume through the box centre, box drawn, R and L marked, as
    PNG bytes (None if the box lies outside it); `signed`: a subtraction, black at no
    enhancement and white at the box's brightest; `preset`: a CT window (`CT_WINDOWS`)."""
    data, affine = canonical(data, affine)
    data = data.astype(np.float32)
    voxels = box_corner_voxels(box, affine)
    centre = voxels.mean(axis=0)
    z = int(np.rint(centre[2]))
    if not 0 <= z < data.shape[2]:
        return None
    nx, ny = data.shape[:2]
    if signed:  # windowed to the finding: the heart would otherwise set the level
        lo_x, lo_y = np.clip(np.floor(voxels[:, :2].min(0)).astype(int), 0, [nx - 1, ny - 1])
        hi_x, hi_y = np.clip(np.ceil(voxels[:, :2].max(0)).astype(int) + 1, 1, [nx, ny])
        inside = data[lo_x:hi_x, lo_y:hi_y, z]
        top = max(float(np.percentile(inside, 99)) if inside.size else 0.0, 1e-6)
        grey = np.clip(data[:, :, z] / top, 0, 1)
    else:
        grey = window(data[:, :, z], preset)
    shown = (radiological(grey) * 255).astype(np.uint8)
    image, scale = enlarged(Image.fromarray(shown).convert("RGB"))
    x0, x1 = nx - 1 - voxels[:, 0].max(), nx - 1 - voxels[:, 0].min()
    y0, y1 = ny - 1 - voxels[:, 1].max(), ny - 1 - voxels[:, 1].min()
    draw = ImageDraw.Draw(image)
    draw.rectangle(
        [x0 * scale, y0 * scale, (x1 + 1) * scale, (y1 + 1) * scale], outline=(255, 215, 0)
    )
    mark_sides(image)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class KeyView:
    """A series a finding is shown on: what the caption calls it (a `WORDS` key), the
    series, its voxels and affine, and how it is windowed."""

    kind: str
    sequence: str
    data: np.ndarray
    affine: np.ndarray
    signed: bool = False  # a subtraction
    preset: str | None = None  # a CT window (`CT_WINDOWS`)


# a CT's phases as shown (caption, phase), each in its window (`CT_PRESETS`); a plain
# phase only where the study has no enhanced one
CT_VIEWS = (
    ("ct_pancreatic", "CT_PANC"),
    ("ct_portal", "CT_PV"),
    ("ct_plain", "CT_NC"),
    ("ct_plain", "CT"),
)


def key_views(study: Study) -> list[KeyView]:
    """What a finding is shown on, with the sequence whose slices it is: T2W and, with
    contrast, the early subtraction (first post-contrast phase minus the pre-contrast
    one), where enhancement is what decides; a CT's enhanced phases in their windows
    (its plain phase only when it has no enhanced one)."""
    views = []
    if "T2W" in study.sequences:
        t2 = study.sequences["T2W"]
        views.append(KeyView("slice", "T2W", t2.data, t2.affine))
    pre, post = study.sequences.get("DCE_0"), study.sequences.get("DCE_1")
    if pre is not None and post is not None and pre.data.shape == post.data.shape:
        difference = np.asarray(post.data, np.float32) - np.asarray(pre.data, np.float32)
        views.append(KeyView("subtraction", "DCE_1", difference, post.affine, signed=True))
    for kind, name in CT_VIEWS:
        enhanced = any(v.kind in ("ct_pancreatic", "ct_portal") for v in views)
        if name in study.sequences and not (kind == "ct_plain" and enhanced):
            volume = study.sequences[name]
            views.append(KeyView(kind, name, volume.data, volume.affine, preset=CT_PRESETS[name]))
    return views


def slice_reference(
    shape: tuple[int, ...], affine: np.ndarray, box: Box, series: int | None, lang: str
) -> str:
    """Where a key image is in its series, as a reader finds it on the PACS: the slice's
    number in the series' own order (along its voxel axis nearest foot-head), the
    slice's position z (mm, patient coordinates) and the series number where the
    headers gave it."""
    affine = np.asarray(affine, np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    axis = int(np.argmax(np.abs(affine[2, :3]) / spacing))
    centre = (np.asarray(box.min_mm) + np.asarray(box.max_mm)) / 2
    index = int(np.rint((np.linalg.inv(affine) @ [*centre, 1.0])[axis]))
    number, total = index + 1, int(shape[axis])
    z = float(affine[:3, :3][2, axis] * index + affine[2, 3])
    if lang == "zh":
        text = f"第{number}层（共{total}层），z = {z:+.1f} mm"
        return text + (f"，序列{series}" if series is not None else "")
    text = f"slice {number} of {total}, z = {z:+.1f} mm"
    return text + (f", series {series}" if series is not None else "")


def _img(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (
        f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _figure(finding: Finding, report: Report, study: Study | None, lang: str) -> str:
    box = finding.evidence.box if finding.evidence else None
    if study is None or box is None:
        return ""
    words, out = WORDS[lang], []
    acquisition = study.metadata.get("acquisition", {})
    for view in key_views(study):
        png = key_image_png(view.data, view.affine, box, view.signed, view.preset)
        if png is not None:
            series = acquisition.get(view.sequence, {}).get("SeriesNumber")
            where = slice_reference(view.data.shape, view.affine, box, series, lang)
            caption = f"{words['finding']} {finding.id} ({where}): {words[view.kind]}"
            out.append(_img(png, caption))
    values = relative_enhancement(study, box)
    if values is not None:
        seconds, since = phase_seconds(report.study.technique)
        font = cjk_font() if lang == "zh" else None
        axes = WORDS[lang] if lang == "en" or font else WORDS["en"]  # no CJK font: English
        since_text = axes["since"].get(since or "", since)
        png = curve_png(values, seconds, since_text, axes["curve_axes"], font)
        out.append(_img(png, f"{words['finding']} {finding.id}: {words['curve']}"))
    return "".join(out)


def render_html(
    report: Report,
    lang: str = "en",
    template: Template | None = None,
    study: Study | None = None,
    concepts: ConceptTable | None = None,
) -> str:
    """The report as one self-contained, printable HTML page."""
    template = template or load_template(report.template.id)
    concepts = concepts or default_concepts()
    words = WORDS[lang]
    rows = _rows(report.fields, report, template, concepts, lang)
    rows += _derived_rows(report.derived, template, concepts, lang)
    for finding in report.findings:
        rows.append(
            f'<tr class="finding"><th colspan="2">{_esc(words["finding"])} {_esc(finding.id)}</th></tr>'
        )
        rows += _rows(finding.fields, report, template, concepts, lang)
        if measured := measured_text(finding, lang):
            rows.append(f"<tr><td>{_esc(words['measured'])}</td><td>{_esc(measured)}</td></tr>")
        rows += _derived_rows(finding.derived, template, concepts, lang)
    problems = signed_problems(report)
    problem_items = "".join(
        f'<li class="{_esc(p.severity)}">{_esc(problem_text(p, lang, template))}</li>'
        for p in problems
    )
    figures = "".join(_figure(f, report, study, lang) for f in report.findings)
    model = f"{report.provenance.model_name or ''} {report.provenance.model_version or ''}".strip()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{_esc(lang)}"><head><meta charset="utf-8">',
            f"<title>{_esc(template.title[lang])} - {_esc(report.study.study_id)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f'<div class="notice" id="notice">{_esc(notice_text(report, lang))}</div>',
            f"<h1>{_esc(template.title[lang])}</h1>",
            f"<p>{_esc(report.study.study_id)} &middot; {_esc(words['model'])}: {_esc(model)} "
            f"&middot; {_esc(report.provenance.created_at)}</p>",
            f"<h2>{_esc(words['narrative'])}</h2>",
            f'<div class="narrative">{_esc(render_text(report, lang, template, concepts, heading=False))}</div>',
            f'<details class="structured"><summary>{_esc(words["report"])}</summary>',
            f'<table id="structured"><tr><th>{_esc(words["field"])}</th><th>{_esc(words["value"])}</th></tr>',
            *rows,
            "</table></details>",
            f"<h2>{_esc(words['images'])}</h2>" + figures if figures else "",
            f"<h2>{_esc(words['problems'])}</h2><ul>{problem_items}</ul>" if problem_items else "",
            "</body></html>",
        ]
    )


def chromium() -> str:
    """The Chromium (or Chrome) binary that prints PDFs: REPORTGEN_CHROMIUM, else on PATH."""
    for candidate in (os.environ.get("REPORTGEN_CHROMIUM"), "chromium", "chromium-browser",
                      "google-chrome"):  # fmt: skip
        if candidate and (found := shutil.which(candidate)):
            return found
    raise ConfigError(
        "--format pdf prints through Chromium, which is not installed "
        "(apt-get install chromium, or set REPORTGEN_CHROMIUM)"
    )


def print_pdf(page: str, out: Path) -> None:
    """Print an HTML page to PDF with headless Chromium (no network, a throwaway profile)."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="reportgen-pdf-") as tmp:
        source = Path(tmp) / "report.html"
        source.write_text(page, encoding="utf-8")
        target = Path(tmp) / "report.pdf"
        command = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={Path(tmp) / 'profile'}", "--no-pdf-header-footer",
            f"--print-to-pdf={target}", source.as_uri(),
        ]  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if run.returncode != 0 or not target.exists():
            raise ConfigError(f"Chromium could not print the PDF (exit {run.returncode})")
        with replaced_privately(out) as part:
            shutil.copyfile(target, part)
