"""Report-level breast findings measured at the acquisition's own resolution.

The decoder writes the report-level booleans (skin thickening, axillary adenopathy,
technical adequacy)
from the whole-study tokens of the 2 mm model grid, where 1.6 mm skin and 5 mm skin look
alike: on 120 clinical development phantoms (seed 3131) it stated none of 8 skin
thickenings, none of 7 adenopathies (and one that was not there) and neither of 2
studies too ghosted by motion to read; a thickening alone makes a study BI-RADS 2,
adenopathy alone BI-RADS 4, an inadequate study BI-RADS 0. Where the study was
acquired at clinical resolution, these are measured instead (`reportgen.measure`) and
the draft states what was measured (`TemplateGrammar.study_measured_as`), as it states
a lesion's measured side and size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reportgen.io.study import Study
from reportgen.measure.artefacts import GHOSTING_INADEQUATE, ghosting
from reportgen.measure.axilla import axillary_nodes
from reportgen.measure.breast import body_mask, fat_level, find_landmarks
from reportgen.measure.skin import skin_thickness

PRE_CONTRAST = "DCE_0"


@dataclass
class StudyFindings:
    """Measured report-level values (field id -> value) and the measurements behind them
    (name -> mm), as the report states them."""

    values: dict[str, object] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)


def measure_study_findings(study: Study, field_ids: set[str]) -> StudyFindings:
    """What the study's own series measure of the template's report-level fields
    `field_ids`; a field whose series are missing, or whose measure failed, is left to
    the decoder."""
    out = StudyFindings()
    t2 = study.sequences.get("T2W")
    t1 = study.sequences.get(PRE_CONTRAST)
    if t2 is None:
        return out
    if "technically_adequate" in field_ids:
        ghosts = max(ghosting(v) for v in (t2, t1) if v is not None)
        if ghosts > GHOSTING_INADEQUATE:  # only the failure is stated: adequate is silent
            out.values["technically_adequate"] = False
    t2_body = body_mask(t2.data)  # each series' body found once, for every measure
    t1_body = body_mask(t1.data) if t1 is not None else None
    landmarks = find_landmarks(t2.data, t2.affine, t2_body)
    if "skin_thickening" in field_ids and t1 is not None:
        fat = (fat_level(t1.data, t1_body), fat_level(t2.data, t2_body))
        skin = skin_thickness(t1, t2, landmarks, fat)
        if skin.thickened is not None:
            out.values["skin_thickening"] = skin.thickened
            for side, mm in skin.by_side.items():
                out.measurements[f"skin_thickness_{side}_mm"] = mm
    post = [v for k, v in study.sequences.items() if k.startswith("DCE_") and k != PRE_CONTRAST]
    if "axillary_adenopathy" in field_ids and t1 is not None and post:
        nodes = axillary_nodes(t1, post, landmarks, t1_body)
        if nodes.adenopathy is not None:
            out.values["axillary_adenopathy"] = nodes.adenopathy
            for side, mm in nodes.short_axis_mm.items():
                if mm > 0:  # an axilla where no node was seen has no short axis
                    out.measurements[f"axillary_node_short_axis_{side}_mm"] = mm
    return out
