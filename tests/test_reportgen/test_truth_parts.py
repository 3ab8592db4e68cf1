"""A lesion whose part carries its own mask label stays one lesion in its truth."""

import numpy as np

from reportgen.data.truth import (
    anatomy_labels,
    fold_parts,
    lesion_labels,
    lesion_mask,
    part_offsets,
)


def test_parts_fold_into_their_lesion_and_nothing_else_moves():
    mask = np.array([0, 1, 11, 11, 2, 5, 12])
    lesions = [{"label": 1, "parts": [11]}, {"label": 2, "parts": []}]
    folded = fold_parts(mask, lesions)
    assert folded.tolist() == [0, 1, 1, 1, 2, 5, 12]  # 12 belongs to no listed lesion
    assert mask.tolist() == [0, 1, 11, 11, 2, 5, 12]  # the stored mask is never changed
    assert lesion_labels(lesions[0]) == [1, 11] and lesion_labels({"label": 3}) == [3]
    assert part_offsets([{"lesions": lesions}, None, {}]) == {10}
    assert fold_parts(mask, [{"label": 1}]) is mask  # nothing to fold: no copy


def test_anatomy_is_no_finding_extent():
    mask = np.array([0, 1, 2, 3, 4, 4])
    truth = {"lesions": [{"label": 1}], "anatomy_labels": {"dilated_ureter": 4}}
    assert lesion_mask(mask, truth).tolist() == [0, 1, 2, 3, 0, 0]
    assert mask.tolist() == [0, 1, 2, 3, 4, 4]
    assert anatomy_labels([truth, None]) == {"dilated_ureter": 4}
    assert lesion_mask(mask, {}) is mask


def test_without_outlined_parts_a_reader_outlines_what_it_did_before():
    """`--no-outline-parts`: solid tissue is its lesion's class and no ureter class, as the
    readers trained before the phantoms labelled either (so `make pelvic-models` still
    reproduces them); with it, solid tissue is class 2 and the ureter a fifth class."""
    from reportgen.model.field_training import reader_config
    from reportgen.report import load_template

    orads, cervix = load_template("orads_mri"), load_template("figo_cervix_2018")
    ureter = {"dilated_ureter": 4}
    new, old = (
        reader_config(orads, [], parts={10}, anatomy=ureter, solid_tissue=flag)
        for flag in (True, False)
    )
    assert (new.label_classes["11"], new.solid_tissue) == (2, True)
    assert (old.label_classes["11"], old.solid_tissue) == (1, False)
    assert new.segment_classes == old.segment_classes == 4  # no ureter class for O-RADS
    staged = reader_config(cervix, [], anatomy=ureter)
    assert (staged.segment_classes, staged.label_classes["4"]) == (5, 4)
    assert "4" not in reader_config(cervix, []).label_classes
