"""The printable report: one self-contained HTML page (escaped, with the notice, the
structured table and a key image per finding) that renders in a real Chromium, and its
PDF."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from helpers.browser import chromium_or_skip
from PIL import Image

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.generate import GenerateOptions
from reportgen.model.generators import GeneratorChoice
from reportgen.render.html import render_html
from reportgen.report import Report
from reportgen.synth import SynthOptions, synth_dataset


@pytest.fixture(scope="module")
def drafted(tmp_path_factory):
    root = tmp_path_factory.mktemp("printable")
    synth_dataset(root / "ph", 1, SynthOptions(protocol="low_resolution", domain="breast", seed=5))
    study = load_study(root / "ph" / read_manifest(root / "ph")[0]["dir"])
    generator = GeneratorChoice(None, "birads_mri")(None, None, False)
    report = generator.draft(study, GenerateOptions(explain=False)).report
    return root, study, report


def _images(page: str) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
        for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def test_html_has_notice_table_and_key_images_and_curve_per_finding(drafted):
    _, study, report = drafted
    page = render_html(report, "en", study=study)
    assert report.notice in page and 'class="notice"' in page
    assert page.count(report.notice) == 1  # the banner; the narrative does not repeat it
    assert "details.structured { display: none; }" in page  # the table, folded, not printed
    rows = page.count("<tr><td>")
    stated = len(report.fields) + len(report.derived)
    stated += sum(len(f.fields) + len(f.derived) for f in report.findings)
    measured = sum(f.evidence is not None and f.evidence.box is not None for f in report.findings)
    assert measured == len(report.findings)  # each finding's three dimensions, in its row
    assert rows == stated + measured  # every stated value, once
    assert page.count("(transverse x anteroposterior x craniocaudal)") == 2 * measured  # + text
    images = _images(page)
    # per finding: T2W and the early subtraction through it, then its time-intensity curve
    assert report.findings and len(images) == 3 * len(report.findings)
    subtraction = "early subtraction (first post-contrast minus pre-contrast)"
    assert page.count(subtraction) == 2 * len(report.findings)  # alt text and caption
    for k, image in enumerate(images):
        if k % 3 == 2:
            continue  # the curve
        assert image.std() > 10  # a real slice (not blank) with the box drawn in yellow
        assert ((image[..., 0] > 200) & (image[..., 1] > 180) & (image[..., 2] < 60)).sum() > 20
    assert 'src="http' not in page and "<script" not in page  # one file, no scripts


def test_each_key_image_says_which_slice_of_its_series_it_is(drafted):
    """The caption's slice number and z are those of the slice through the box centre,
    counted in the series' own voxel order (here: a volume stored foot to head, and the
    same volume stored head to foot, as scanners write either)."""
    from reportgen.io.study import Study, Volume
    from reportgen.render.html import slice_reference

    _, study, report = drafted
    box = report.findings[0].evidence.box
    centre_z = (box.min_mm[2] + box.max_mm[2]) / 2
    t2 = study.sequences["T2W"]
    page = render_html(report, "en", study=study)
    [caption] = re.findall(r"<figcaption>[^<(]*\(([^)]*)\): axial T2W through the finding", page)
    number, total = map(int, re.match(r"slice (\d+) of (\d+)", caption).groups())
    z = float(re.search(r"z = ([+-][\d.]+) mm", caption).group(1))
    assert total == t2.data.shape[2] and abs(z - centre_z) <= t2.affine[2, 2] / 2 + 0.05
    assert z == pytest.approx(t2.affine[2, 2] * (number - 1) + t2.affine[2, 3], abs=0.05)
    flipped = t2.affine.copy()
    flipped[:3, 2] *= -1
    flipped[:3, 3] = t2.affine[:3, :3] @ [0, 0, total - 1] + t2.affine[:3, 3]
    reversed_t2 = Volume(t2.data[:, :, ::-1].copy(), flipped)
    reverse = slice_reference(reversed_t2.data.shape, flipped, box, 7, "en")
    assert reverse.startswith(f"slice {total + 1 - number} of {total}, z = {z:+.1f} mm")
    assert reverse.endswith(", series 7")
    study_reversed = Study("r", {**study.sequences, "T2W": reversed_t2}, study.source, study.form)
    assert "第" in render_html(report, "zh", study=study_reversed)


def test_the_curve_is_the_relative_enhancement_of_the_box(drafted):
    """An enhancing mass rises after contrast; the same box on the pre-contrast phase
    repeated (no contrast arrived) stays flat at zero."""
    from reportgen.io.study import Study
    from reportgen.render.curves import relative_enhancement

    _, study, report = drafted
    box = report.findings[0].evidence.box
    values = relative_enhancement(study, box)
    assert values is not None and values[0] == 0.0 and values[1] > 30.0
    flat = dict(study.sequences)
    for phase in ("DCE_1", "DCE_2", "DCE_3"):
        flat[phase] = study.sequences["DCE_0"]
    same = Study(study_id="flat", sequences=flat, source=study.source, form=study.form)
    assert np.allclose(relative_enhancement(same, box), 0.0)
    del flat["DCE_2"]
    assert (
        relative_enhancement(Study(study_id="x", sequences=flat, source="", form="folder"), box)
        is None
    )


def test_html_box_lies_on_the_side_of_the_reported_breast(drafted):
    _, study, report = drafted
    image = _images(render_html(report, "en", study=study))[0]
    yellow = np.argwhere((image[..., 0] > 200) & (image[..., 1] > 180) & (image[..., 2] < 60))
    side = report.findings[0].fields["laterality"].value
    on_viewer_right = yellow[:, 1].mean() > image.shape[1] / 2
    assert on_viewer_right == (side == "left")  # radiological convention


def test_html_escapes_what_it_shows(drafted):
    _, _, report = drafted
    hostile = Report.model_validate_json(report.to_json())
    hostile.comment = '<script>alert("x")</script>'
    hostile.study.study_id = "<img src=x onerror=alert(1)>"
    page = render_html(hostile, "zh")
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page or "&lt;img" in page


@pytest.mark.browser
def test_html_renders_in_chromium_and_prints_to_pdf(drafted, tmp_path, cli):
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    root, study, report = drafted
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(report, "en", study=study), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1000, "height": 1400})
        page.goto(page_file.as_uri())
        assert page.locator("#notice").is_visible()
        assert "not for clinical use" in page.locator("#notice").inner_text()
        assert not page.locator("#structured").is_visible()  # folded on screen ...
        page.locator("details.structured > summary").click()
        assert page.locator("#structured").is_visible()  # ... and opens with a click
        widths = page.locator("figure img").evaluate_all("els => els.map(e => e.naturalWidth)")
        assert widths and all(w > 0 for w in widths)  # the key images decoded
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[0] > 1400 and pixels.std() > 20  # a whole page was drawn
    pdf = tmp_path / "report.pdf"
    study_dir = root / "ph" / read_manifest(root / "ph")[0]["dir"]
    result = cli("generate", study_dir, "--format", "pdf", "--out", pdf, "--no-explain")
    assert result.code == 0, result.err
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
    if shutil.which("pdftotext"):  # printed once: the narrative, not also the table
        printed = subprocess.run(
            ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Structured report" not in printed and "Report" in printed


@pytest.mark.parametrize("font", ["installed", "none"])
def test_a_chinese_page_labels_its_curve_in_chinese_where_a_font_can_draw_it(
    drafted, monkeypatch, font
):
    """With a CJK font installed the zh page's curve is labelled in Chinese; without one it
    keeps English labels: never a plot of empty boxes where characters should be
    (matplotlib warns of every glyph its font lacks)."""
    import warnings

    from reportgen.render import curves, html

    _, study, report = drafted
    if font == "none":
        monkeypatch.setattr(html, "cjk_font", lambda: None)
    elif curves.cjk_font() is None:
        pytest.skip(
            "no CJK font installed (fonts-noto-cjk, fonts-wqy-zenhei, fonts-droid-fallback)"
        )
    labels = []
    original = curves.curve_png

    def recording(values, seconds, since, axes, font=None):
        labels.append(axes["enhancement"])
        return original(values, seconds, since, axes, font)

    monkeypatch.setattr(html, "curve_png", recording)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_html(report, "zh", study=study)
    assert labels and not [w for w in caught if "missing from font" in str(w.message)]
    expected = "相对强化率（%）" if font == "installed" else "relative enhancement (%)"
    assert set(labels) == {expected}
