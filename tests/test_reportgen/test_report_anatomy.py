"""A free-text report of another anatomy than its template's gets a warning."""

from __future__ import annotations

from reportgen.report import load_template
from reportgen.report.anatomy import mentioned_regions, other_anatomy_problem
from reportgen.report.parse import parse_report

PROSTATE = (
    "MRI PROSTATE. Findings: the prostate measures 4.5 x 3.2 x 3.6 cm. In the left "
    "peripheral zone there is a 1.2 cm lesion with marked diffusion restriction. Seminal "
    "vesicles are unremarkable. Impression: PI-RADS 4 lesion."
)
BREAST = (
    "Right breast: 9 mm oval mass at 7 o'clock. Left breast: no suspicious enhancement. "
    "Axillae normal. The uterus was not imaged."
)


def test_region_words_are_counted_in_english_and_chinese():
    assert mentioned_regions(PROSTATE)["prostate"] == 4
    assert mentioned_regions("前列腺外周带结节，精囊未见异常。")["prostate"] == 2
    assert mentioned_regions("右侧乳腺外上象限肿块")["breast"] == 1


def test_a_prostate_report_parsed_as_birads_carries_a_warning(cli, tmp_path):
    report = parse_report(PROSTATE, "birads_mri", "en")
    first = report.validation.problems[0]
    assert (first.rule, first.severity) == ("other_anatomy", "warning")
    assert "prostate" in first.message and "birads_mri" in first.message
    path = tmp_path / "prostate.txt"
    path.write_text(PROSTATE)
    result = cli("parse", path, "--template", "birads_mri")
    assert result.code == 0 and "warning: the text describes the prostate" in result.err


def test_a_report_of_the_template_anatomy_gets_no_warning():
    assert other_anatomy_problem(BREAST, load_template("birads_mri")) is None
    assert other_anatomy_problem(PROSTATE, load_template("figo_cervix_2018")) is not None
    report = parse_report(BREAST, "birads_mri", "en")
    assert not any(p.rule == "other_anatomy" for p in report.validation.problems)
