"""Rebuild the screenshots in docs/images: one phantom per template drafted by its bundled
model, the review app's viewer and worklist, and each template's printable page.

    .venv/bin/python docs/make_screenshots.py          # needs Debian's chromium (make test's)

Seeds are fixed so the pictures change only when the product does. Everything shown is a
synthetic phantom: the bundled models are not for clinical use.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
CHROMIUM = "/usr/bin/chromium"
WEBGL = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
PASSWORD = "correct horse battery"
STUDY_DATE = "2026-11-30"  # fixed, so the pictures change only when the product does
# domain -> (phantom seed, template, synth options): a pelvis is reported on the
# clinical question's template, which names it; the breast shows a malignant mass
PHANTOMS = {
    "breast": (12, "birads_mri", ("--malignant-fraction", "1.0")),
    "cervix": (3, "figo_cervix_2018", ()),
    "endometrium": (3, "figo_endometrium_2023", ()),
    "ovary": (3, "orads_mri", ()),
}


def reportgen(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "reportgen.cli", *map(str, args)], check=True)


def draft_all(root: Path) -> dict[str, Path]:
    """Each domain's phantom with its JSON draft and printable page beside it."""
    studies = root / "studies"
    folders = {}
    for domain, (seed, template, options) in PHANTOMS.items():
        work = root / domain
        reportgen("synth", work, "--domain", domain, "--n", 1, "--seed", seed, *options)
        study = next(p for p in work.iterdir() if p.is_dir())
        target = studies / study.name
        target.parent.mkdir(parents=True, exist_ok=True)
        study.rename(target)
        draft = ("generate", target, "--template", template)
        # a phantom's NIfTI carries no date: the worklist shows one as a DICOM study's would
        reportgen(*draft, "--out", studies / f"{study.name}.json", "--study-date", STUDY_DATE)
        reportgen(*draft, "--format", "html", "--out", root / f"{domain}.html")
        folders[domain] = target
    return folders


def main() -> None:
    from playwright.sync_api import sync_playwright

    from reportgen.review.store import RewardLog

    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = draft_all(root)
        db = str(root / "log.db")
        RewardLog(db).accounts.add("reader", "Dr Reader", PASSWORD)
        port = "8791"
        review = ("review", "--db", db, "--port", port, "--studies", str(root / "studies"))
        server = subprocess.Popen([sys.executable, "-m", "reportgen.cli", *review])
        try:
            time.sleep(8)
            url = f"http://127.0.0.1:{port}"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=WEBGL)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(120_000)
                page.goto(f"{url}/")
                page.fill("#username", "reader")
                page.fill("#password", PASSWORD)
                page.click("#sign-in")
                page.wait_for_load_state("load")
                page.screenshot(path=str(OUT / "worklist.png"))
                for domain, folder in folders.items():
                    if domain not in ("breast", "cervix"):
                        continue
                    page.goto(f"{url}/")
                    page.locator("tr", has_text=folder.name).locator("a.open-draft").click()
                    page.wait_for_load_state("load")
                    page.evaluate("window.reportgenViewer.ready.then(() => true)")
                    if domain == "breast":
                        page.select_option("#viewer-right", "DCE")
                        page.wait_for_timeout(4000)
                        page.screenshot(path=str(OUT / "viewer_breast_curve.png"))
                        page.select_option("#viewer-left", "MIP")
                        page.select_option("#viewer-right", "SUB")
                        page.wait_for_timeout(4000)
                        page.screenshot(path=str(OUT / "viewer_breast_subtraction.png"))
                    else:
                        page.select_option("#viewer-layout", "sagittal")
                        page.wait_for_timeout(1500)
                        page.screenshot(path=str(OUT / "viewer_cervix_sagittal.png"))
                for domain in folders:
                    printable = browser.new_page(viewport={"width": 1000, "height": 1400})
                    printable.goto((root / f"{domain}.html").as_uri())
                    printable.wait_for_load_state("load")
                    printable.screenshot(path=str(OUT / f"printable_{domain}.png"))
                    printable.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(30)
    for picture in sorted(OUT.glob("*.png")):
        print(picture.relative_to(HERE.parent), f"{picture.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
