"""A pancreas CT draft leaves as every MRI draft does: DICOM SR and SEG over the CT's own
series (the pancreatic phase), and the printable page with each finding on both enhanced
phases in their CT windows, radiological, R and L marked."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
from helpers.phantom_dicom import ct_phantom_as_dicom
from test_dicom_export import dciodvfy_errors, seg_points_ras, write_sr_and_seg

from reportgen.io import load_study
from reportgen.model.generate import GenerateOptions
from reportgen.model.generators import GeneratorChoice
from reportgen.render.html import render_html

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ct_drafted(tmp_path_factory):
    """A pancreas CT phantom with a tumour, exported as CT DICOM (its pancreatic and
    portal venous phases, tagged ABDOMEN), drafted by the bundled reader."""
    root = tmp_path_factory.mktemp("ct")
    study = load_study(ct_phantom_as_dicom(root, seed=64))
    assert list(study.sequences) == ["CT_PANC", "CT_PV"]
    generator = GeneratorChoice()("ABDOMEN", "abdomen", False, "CT")
    assert generator.template.id == "pancreas_ct"
    draft = generator.draft(study, GenerateOptions(explain=False))
    write_sr_and_seg(root, study, draft)
    return root, study, draft


@pytest.mark.parametrize("name", ["report.sr.dcm", "report.seg.dcm"])
def test_sr_and_seg_of_a_ct_pass_dciodvfy(ct_drafted, name):
    root, _, _ = ct_drafted
    assert dciodvfy_errors(root / name) == []


def test_the_seg_lies_on_the_pancreatic_phase_where_the_draft_outlined_each_finding(ct_drafted):
    root, study, draft = ct_drafted
    seg = hd.seg.segread(root / "report.seg.dcm")
    referenced = {
        str(item.SeriesInstanceUID) for item in seg.ReferencedSeriesSequence
    }  # the frames' own series
    assert referenced == {study.metadata["series"]["CT_PANC"]["series_uid"]}
    assert [item.SegmentLabel for item in seg.SegmentSequence] == [
        f"finding {f.id}" for f in draft.report.findings
    ]
    for number, (finding, outline) in enumerate(
        zip(draft.report.findings, draft.outlines, strict=True), start=1
    ):
        points = seg_points_ras(seg, number)
        drawn = np.argwhere(outline) @ draft.grid_affine[:3, :3].T + draft.grid_affine[:3, 3]
        assert np.linalg.norm(points.mean(0) - drawn.mean(0)) < 3.0, finding.id


def test_the_page_shows_each_finding_on_both_phases_in_their_windows(ct_drafted):
    _, study, draft = ct_drafted
    page = render_html(draft.report, "en", study=study)
    for finding in draft.report.findings:
        assert page.count(f"<figcaption>Finding {finding.id} (") == 2  # both phases
    assert "pancreas window (W 300, L 80)" in page and "abdominal window (W 400, L 40)" in page
    assert "trained on synthetic phantoms" in page
