"""The review page's image viewer (NiiVue, WebGL2) in a real browser: Debian's Chromium
draws it through SwiftShader where the machine has no GPU. The checks read its state and
the pixels it drew: the study and its subtraction side by side, opened at the first
finding, radiological convention, the box on the lesion's side, the curve of the
dynamic series, window/level, scrolling, panning and the calliper by mouse."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import chromium_or_skip, drafted_breast_study, open_first_draft
from helpers.review import PASSWORD
from helpers.server import ReviewServer
from PIL import Image

from reportgen.review.store import RewardLog

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Chromium's software WebGL2 (no GPU): ANGLE on SwiftShader
WEBGL_ARGS = [
    "--headless",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def pixels(locator) -> np.ndarray:
    """What the browser shows of an element, as an RGB array."""
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def green(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 1] > 180) & (rgb[..., 0] < 90) & (rgb[..., 2] < 90)


def red(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 150) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)


def wait_until(page, condition: str, seconds: float = 60.0) -> None:
    """Poll a condition in the page (the page's CSP refuses Playwright's wait_for_function,
    which evaluates a string)."""
    for _ in range(int(seconds * 10)):
        if page.evaluate(condition):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the page never met {condition}")


def test_the_viewer_shows_the_study_as_a_radiologist_reads_it(cli, tmp_path):
    from playwright.sync_api import sync_playwright

    from reportgen.synth import SynthOptions

    executable = chromium_or_skip()
    studies = tmp_path / "studies"
    draft = drafted_breast_study(  # a left breast mass, at the clinical protocol
        cli, studies, SynthOptions(domain="breast", seed=12, malignant_fraction=1.0)
    )
    boxed = [f for f in draft.findings if f.evidence is not None and f.evidence.box is not None]
    assert boxed, "the generated draft has no finding with a box to show"
    box = boxed[0].evidence.box
    centre = (np.asarray(box.min_mm) + np.asarray(box.max_mm)) / 2
    db = str(tmp_path / "log.db")
    RewardLog(db).accounts.add("alice", "Dr Alice", PASSWORD)
    server = ReviewServer(db, studies, tmp_path / "server.log")
    shots = Path(os.environ.get("REPORTGEN_SCREENSHOT_DIR", tmp_path))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=WEBGL_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            open_first_draft(page, server.url, "alice", PASSWORD)
            page.wait_for_load_state("load")  # every script has run
            assert page.evaluate("window.reportgenViewer.ready.then(() => true)")
            assert page.locator("#volume-viewer").is_visible()
            assert not page.locator("#slice-viewer").is_visible()
            names = page.evaluate(
                "['left', 'right'].map(s => window.reportgenViewer.panes[s].volumes.map(v => v.name))"
            )
            assert names[0][0] == "T2W.nii.gz" and names[1][0] == "SUB.nii.gz"
            assert "boxes.nii.gz" in names[0] and "boxes.nii.gz" in names[1]

            # opened at the first boxed finding, both panes on the same point
            at = page.evaluate(
                "['left', 'right'].map(s => { const nv = window.reportgenViewer.panes[s];"
                " return Array.from(nv.frac2mm(nv.scene.crosshairPos)).slice(0, 3); })"
            )
            for pane in at:
                assert np.abs(np.asarray(pane) - centre).max() < 3.0, (pane, centre)
            page.screenshot(path=str(shots / "viewer_breast.png"))

            # radiological convention: a lesion in the patient's right breast (x > 0 in
            # RAS) is drawn left of the body's midline, one in the left breast right of it
            page.select_option("#viewer-layout", "axial")
            page.wait_for_timeout(500)
            left = pixels(page.locator("#viewer-left-canvas"))
            body = left.sum(-1) > 60
            box_columns = np.nonzero(green(left))[1]
            assert box_columns.size > 20, "no box drawn on the axial slice through the finding"
            midline = np.nonzero(body)[1].mean()
            assert (box_columns.mean() < midline) == (centre[0] > 0)

            # scrolling moves through the axial slices; the other pane follows
            canvas = page.locator("#viewer-left-canvas")
            bounds = canvas.bounding_box()
            middle = (bounds["x"] + bounds["width"] / 2, bounds["y"] + bounds["height"] / 2)
            before = page.evaluate("window.reportgenViewer.panes.left.scene.crosshairPos[2]")
            page.mouse.move(*middle)
            for _ in range(3):
                page.mouse.wheel(0, 120)
                page.wait_for_timeout(100)
            after = page.evaluate(
                "['left', 'right'].map(s => Array.from(window.reportgenViewer.panes[s]"
                ".frac2mm(window.reportgenViewer.panes[s].scene.crosshairPos)))"
            )
            moved = page.evaluate("window.reportgenViewer.panes.left.scene.crosshairPos[2]")
            assert moved != before
            assert abs(after[0][2] - after[1][2]) < 3.0  # linked cursors

            # window/level by right-drag
            window = "[window.reportgenViewer.panes.left.volumes[0].cal_min, window.reportgenViewer.panes.left.volumes[0].cal_max]"
            level_before = page.evaluate(window)
            page.mouse.move(*middle)
            page.mouse.down(button="right")
            page.mouse.move(middle[0] + 60, middle[1] - 40, steps=5)
            page.mouse.up(button="right")
            assert page.evaluate(window) != level_before

            # the calliper: shift-drag measures in mm
            page.keyboard.down("Shift")
            page.mouse.move(middle[0] - 40, middle[1])
            page.mouse.down()
            page.mouse.move(middle[0] + 40, middle[1], steps=5)
            page.mouse.up()
            page.keyboard.up("Shift")
            measured = page.evaluate(
                "window.reportgenViewer.panes.left.document.completedMeasurements.length"
            )
            assert measured == 1

            # pan with the pan tool
            page.select_option("#viewer-tool", "pan")
            pan_before = page.evaluate(
                "Array.from(window.reportgenViewer.panes.left.scene.pan2Dxyzmm)"
            )
            page.mouse.move(*middle)
            page.mouse.down()
            page.mouse.move(middle[0] + 50, middle[1] + 30, steps=5)
            page.mouse.up()
            pan_after = page.evaluate(
                "Array.from(window.reportgenViewer.panes.left.scene.pan2Dxyzmm)"
            )
            assert pan_after != pan_before

            # the dynamic series: the time-intensity curve at the cursor, in the fourth tile
            page.select_option("#viewer-layout", "planes")
            page.select_option("#viewer-right", "DCE")
            wait_until(page, "window.reportgenViewer.panes.right.volumes[0]?.name === 'DCE.nii.gz'")
            page.evaluate(f"window.reportgenViewer.goTo({[float(c) for c in centre]})")
            page.wait_for_timeout(800)
            right = pixels(page.locator("#viewer-right-canvas"))
            h, w = right.shape[:2]
            assert red(right[h // 2 :, w // 2 :]).sum() > 50, "no curve drawn"
            assert red(right[: h // 2, : w // 2]).sum() < red(right[h // 2 :, w // 2 :]).sum()
            page.screenshot(path=str(shots / "viewer_breast_curve.png"))
            assert not errors, errors
            browser.close()
    finally:
        server.kill()
        shutil.copy(tmp_path / "server.log", tmp_path / "server.kept.log")
