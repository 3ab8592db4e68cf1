"""Staging reader: trains on phantoms, drafts valid FIGO reports, is chosen by template."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_refused

from reportgen.data import read_manifest
from reportgen.errors import ConfigError
from reportgen.io import load_study
from reportgen.model import generators
from reportgen.model.field_generate import FieldReaderGenerator
from reportgen.model.field_model import load_reader
from reportgen.model.field_training import FieldTrainArgs, report_targets, train_field_reader
from reportgen.report import Report, load_template, validate_report
from reportgen.synth import SynthOptions, synth_dataset


def _tiny_reader(data, model, rare_share: float = 0.0) -> dict:
    """A staging reader at its tiny size, trained in seconds."""
    args = FieldTrainArgs(
        data=data, out=model, config="tiny", epochs=2, batch_size=4, tree_iterations=20,
        rare_share=rare_share,
    )  # fmt: skip
    return train_field_reader(args, log=lambda _: None)


@pytest.fixture(scope="module")
def cervix(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    data = root / "data"
    synth_dataset(
        data, 10, SynthOptions(protocol="low_resolution", domain="cervix", seed=21), workers=2
    )
    model = root / "model"
    summary = _tiny_reader(data, model)
    return data, model, summary


def test_targets_are_the_report_own_values(cervix):
    data, model, _ = cervix
    cfg = load_reader(model).cfg
    row = read_manifest(data)[0]
    report = Report.model_validate(row["report"])
    answers, size = report_targets(cfg, report)
    for (name, values), answer in zip(cfg.study_fields.items(), answers, strict=False):
        value = report.fields[name].value
        assert values[answer] == (
            ("true" if value else "false") if isinstance(value, bool) else value
        )
    assert size == report.findings[0].fields["size_mm"].value
    assert "stage" not in cfg.study_fields  # the stage is derived, never a target


def test_reader_drafts_a_valid_report_whose_stage_follows_its_criteria(cervix):
    data, model, summary = cervix
    assert summary["template"] == "figo_cervix_2018" and summary["held_back"] == 1
    generator = generators.open_generator(model)
    assert isinstance(generator, FieldReaderGenerator)
    row = read_manifest(data)[3]
    draft = generator.draft(load_study(data / row["dir"]))
    report = draft.report
    template = load_template("figo_cervix_2018")
    assert report.template.id == "figo_cervix_2018"
    assert report.provenance.checkpoint_sha256 == generator.checkpoint
    assert "not for clinical use" in report.notice.lower()
    assert set(report.fields) >= {"parametrial_invasion", "vaginal_involvement", "pelvic_nodes"}
    if report.findings[0].fields.get("size_mm") is not None:  # outlined: valid, with its box
        assert validate_report(report, template).valid
        assert report.findings[0].evidence.box is not None
    else:  # nothing outlined: says so rather than inventing a size
        assert any(p.rule == "not_outlined" for p in report.validation.problems)


def test_reader_reads_criteria_with_trees_on_the_measured_columns_only(cervix):
    _, model, _ = cervix
    reader = load_reader(model)
    # the cervix phantoms label dilated ureters: the reader outlines them as a fifth class
    assert reader.cfg.segment_classes == 5 and reader.cfg.label_classes["4"] == 4
    assert reader.unet.head.out_channels == 5
    answers = {**reader.cfg.study_fields, **reader.cfg.finding_fields}
    assert reader.trees is not None and set(reader.cfg.tree_shapes) == set(answers)
    width = reader.trunk[0].num_features
    summary = torch.randn(5, width, generator=torch.Generator().manual_seed(0))
    other = torch.randn(5, width, generator=torch.Generator().manual_seed(1))
    measured = torch.zeros(width, dtype=torch.bool)
    measured[torch.from_numpy(reader.measured_columns())] = True
    other[:, measured] = summary[:, measured]  # the deep features differ, the geometry not
    read, again = reader.read(summary), reader.read(other)
    for name, values in answers.items():
        assert read[f"field:{name}"].shape == (5, len(values))
        assert torch.equal(read[f"field:{name}"], again[f"field:{name}"])


def test_reader_weights_load_strictly(cervix, tmp_path):
    _, model, _ = cervix
    folder = tmp_path / "broken"
    folder.mkdir()
    config = json.loads((model / "config.json").read_text())
    config["widths"] = [4, 8, 16]  # another architecture than the weights
    config["grid_shape"] = [32, 32, 16]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes())
    with pytest.raises(Exception, match="weights do not fit"):
        load_reader(folder)


def test_template_picks_the_bundled_model_and_a_mismatch_is_refused(cervix, tmp_path, monkeypatch):
    _, model, _ = cervix
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "figo_cervix_2018").symlink_to(model, target_is_directory=True)
    monkeypatch.setattr(generators, "BUNDLED_MODELS", bundled)
    assert generators.bundled_templates() == ["figo_cervix_2018"]
    chosen = generators.open_generator(template="figo_cervix_2018")
    assert chosen.template.id == "figo_cervix_2018"
    with pytest.raises(ConfigError, match="no bundled model for template 'orads_mri'"):
        generators.open_generator(template="orads_mri")
    with pytest.raises(ConfigError, match="drafts figo_cervix_2018, not birads_mri"):
        generators.open_generator(model, template="birads_mri")


def test_cli_generate_with_a_template_its_model_does_not_draft_is_refused(cervix, cli):
    data, model, _ = cervix
    row = read_manifest(data)[0]
    result = cli("generate", data / row["dir"], "--model", model, "--template", "birads_mri")
    assert_refused(result, "figo_cervix_2018", "birads_mri")


def test_cli_generate_drafts_with_the_reader(cervix, cli, tmp_path):
    data, model, _ = cervix
    row = read_manifest(data)[1]
    out = tmp_path / "draft.json"
    result = cli("generate", data / row["dir"], "--model", model, "--out", out)
    assert result.code == 0, result.err
    report = Report.model_validate_json(out.read_text())
    assert report.derived["stage"].value.startswith("figo2018_")
    torch.manual_seed(0)  # drafting is deterministic: the same study gives the same report
    again = cli("generate", data / row["dir"], "--model", model, "--format", "json")
    assert json.loads(again.out)["fields"] == json.loads(out.read_text())["fields"]


@pytest.fixture(scope="module")
def adnexa(tmp_path_factory):
    root = tmp_path_factory.mktemp("adnexa")
    data = root / "data"
    synth_dataset(
        data,
        12,
        SynthOptions(protocol="low_resolution", domain="ovary", seed=5, malignant_fraction=0.5),
        workers=2,
    )
    model = root / "model"
    _tiny_reader(data, model, rare_share=0.3)  # rare-class draws, as the O-RADS reader trains
    return data, model


def test_lesion_measures_have_a_fixed_length_and_see_enhancement():
    import numpy as np

    from reportgen.model.lesion_reader import N_MEASURES, lesion_measures

    image = np.zeros((7, 16, 16, 8), np.float32)
    image[:, 4:10, 4:10, 2:6] = 0.5
    image[3:, 4:10, 4:10, 2:6] += np.array([0, 0.3, 0.5, 0.6])[:, None, None, None]
    region = image[0] > 0.4
    present = np.ones(7, bool)
    measures = lesion_measures(image, present, region, np.diag([4.0, 4.0, 4.0, 1.0]))
    assert measures.shape == (N_MEASURES,)
    without_dce = present.copy()
    without_dce[3:] = False
    other = lesion_measures(image, without_dce, region, np.diag([4.0, 4.0, 4.0, 1.0]))
    assert other.shape == (N_MEASURES,) and not np.array_equal(measures, other)


def test_solid_tissue_is_measured_on_its_own_outline_not_the_enhancing_wall():
    """A cyst whose wall enhances like an intermediate curve and whose nodule rises slowly:
    the whole lesion's most-enhancing part is the wall, the solid tissue's curve is the
    nodule's, so the reader sees the lexicon's curve (the solid tissue's)."""
    import numpy as np

    from reportgen.model.lesion_reader import (
        DCE,
        N_CURVE,
        N_MEASURES,
        lesion_measures,
        n_measures,
        outlined_lesions,
        relative_curve,
    )

    image = np.full((7, 16, 16, 12), 0.5, np.float32)
    labels = np.zeros((16, 16, 12), np.int64)
    labels[3:13, 3:13, 2:10] = 1  # the cyst ...
    labels[4:12, 4:12, 3:9] = 0  # ... is its wall (the lumen stays unlabelled here)
    labels[4:8, 4:8, 3:6] = 2  # and a solid nodule on it
    labels[4:12, 4:12, 3:9][labels[4:12, 4:12, 3:9] == 0] = 1
    wall = (labels == 1) & ~np.pad(np.ones((8, 8, 6), bool), ((4, 4), (4, 4), (3, 3)))
    for phase, (w, n) in enumerate([(0.0, 0.0), (0.9, 0.1), (1.0, 0.2), (1.0, 0.35)]):
        image[DCE[phase]][wall] += w
        image[DCE[phase]][labels == 2] += n
    [(region, solid)] = outlined_lesions(labels, solid_tissue=True)
    assert region.sum() == (labels > 0).sum() and solid.sum() == (labels == 2).sum()
    present = np.ones(7, bool)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    measures = lesion_measures(image, present, region, affine, solid)
    assert measures.shape == (n_measures(True),) == (N_MEASURES + n_measures(True) - N_MEASURES,)
    solid_curve = measures[N_MEASURES + 3 : N_MEASURES + 3 + N_CURVE]
    np.testing.assert_allclose(solid_curve[:3], [0.2, 0.4, 0.7], atol=1e-5)  # the nodule's
    assert relative_curve(image, region)[0] > 1.5  # the lesion's hottest fifth: the wall
    assert outlined_lesions(labels)[0][1] is None  # a reader without solid tissue
    assert outlined_lesions(labels)[0][0].sum() == (labels == 1).sum()


def test_adnexal_reader_reads_each_lesion_with_applicable_fields_only(adnexa):
    data, model = adnexa
    generator = generators.open_generator(model)
    cfg = generator.model.cfg
    assert generator.template.id == "orads_mri"
    # the phantoms label solid tissue, so the reader outlines it as part of its lesion
    assert cfg.solid_tissue and {"11": 2, "12": 2}.items() <= cfg.label_classes.items()
    assert "laterality" not in cfg.lesion_fields  # measured from the outline, not guessed
    assert {"composition", "tic", "solid_tissue"} <= set(cfg.lesion_fields)
    template = load_template("orads_mri")
    for row in read_manifest(data)[:4]:
        draft = generator.draft(load_study(data / row["dir"]))
        report = draft.report
        assert len(report.findings) <= template.finding_max
        assert draft.malignancy_probability is None or 0.0 <= draft.malignancy_probability <= 1.0
        for finding in report.findings:
            assert finding.fields["laterality"].value in ("right", "left")
            assert finding.evidence is not None and finding.evidence.box is not None
        problems = [p for p in validate_report(report, template).problems if p.severity == "error"]
        # the only errors a reader can leave are the sizes it refused to state
        assert all(p.where.endswith("size_mm") for p in problems), problems


PELVIC = {
    "figo_cervix_2018": "cervix",
    "figo_endometrium_2023": "endometrium",
    "orads_mri": "ovary",
}


@pytest.mark.parametrize(
    "template", [t for t in generators.bundled_templates() if t in PELVIC] or ["none bundled"]
)
def test_bundled_pelvic_model_drafts_its_demo(template, cli, tmp_path):
    assert template in PELVIC, "no pelvic model is bundled"
    folder = generators.bundled_model(template)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 20 * 1024 * 1024, "each bundled model must stay within 20 MB"
    assert "not for clinical use" in (folder / "README.md").read_text()
    result = cli("demo", "--domain", PELVIC[template], "--out", tmp_path)
    assert result.code == 0, result.err
    report = Report.model_validate_json((tmp_path / "draft_report.json").read_text())
    assert report.template.id == template and report.validation.valid
    assert "not for clinical use" in result.out


def test_the_cervix_draft_states_the_sides_and_node_size_it_outlines(tmp_path):
    """The side of parametrial invasion is measured on the outlined extension, the side
    of the metastatic nodes and the largest one's short axis on the outlined nodes (never
    a head's guess): on phantoms painted with invasion towards either side and with
    nodes, the bundled reader states what the phantom drew, in the text too."""
    from reportgen.render.text import render_text

    if "figo_cervix_2018" not in generators.bundled_templates():
        pytest.fail("the cervix model is bundled")
    generator = generators.open_generator(template="figo_cervix_2018")
    synth_dataset(
        tmp_path, 8, SynthOptions(protocol="low_resolution", domain="cervix", seed=4545), workers=1
    )
    read, nodes = {}, []
    for row in read_manifest(tmp_path):
        truth = Report.model_validate_json((tmp_path / row["dir"] / "report.json").read_text())
        draft = generator.draft(load_study(tmp_path / row["dir"])).report
        side = truth.fields.get("parametrial_side")
        invaded = draft.fields["parametrial_invasion"].value
        assert ("parametrial_side" in draft.fields) == invaded  # stated exactly where it applies
        if side is not None and invaded:
            assert draft.fields["parametrial_side"].value == side.value
            read[side.value] = render_text(draft, "en")
        node_side = truth.fields.get("node_side")
        if node_side is not None:
            assert draft.fields["node_side"].value == node_side.value
            truth_axis = truth.fields["node_short_axis_mm"].value
            assert abs(draft.fields["node_short_axis_mm"].value - truth_axis) <= 2
            nodes.append(node_side.value)
    assert set(read) == {"right", "left"} and nodes
    assert "Parametrial invasion side: left." in read["left"]


def test_generate_picks_the_bundled_model_by_template(cli, tmp_path):
    if "figo_cervix_2018" not in generators.bundled_templates():
        pytest.fail("the cervix model is bundled")
    data = tmp_path / "study"
    synth_dataset(
        data, 1, SynthOptions(protocol="low_resolution", domain="cervix", seed=77), workers=1
    )
    row = read_manifest(data)[0]
    out = tmp_path / "draft.json"
    result = cli("generate", data / row["dir"], "--template", "figo_cervix_2018", "--out", out)
    assert result.code == 0, result.err
    assert Report.model_validate_json(out.read_text()).template.id == "figo_cervix_2018"
    assert_refused(cli("generate", data / row["dir"], "--template", "nope"), "nope")


def test_outline_batches_vary_the_acquisition_but_never_the_anatomy():
    """Augmented outline batches: labels move only with a left-right flip of their image;
    intensities change (gain, gamma, bias, noise); up/down and front/back never flip."""
    from reportgen.model.field_training import _batch

    g = torch.Generator().manual_seed(0)
    image = torch.zeros(1, 7, 8, 6, 4)
    image[0, 0, 1, 1, 1] = 1.0  # one bright T2W voxel, labelled
    labels = torch.zeros(1, 8, 6, 4, dtype=torch.long)
    labels[0, 1, 1, 1] = 1
    present = torch.ones(1, 7, dtype=torch.bool)
    seen = set()
    for _ in range(20):
        x, _, y = _batch(image, present, labels, [0], g, 0.0, augmented=True)
        (where,) = torch.nonzero(y[0]).tolist()
        assert tuple(where) in {(1, 1, 1), (6, 1, 1)}  # only x ever flips
        assert x[0, 0, where[0], 1, 1] == x[0, 0].max()  # the label stays on its voxel
        seen.add(tuple(where))
        assert not torch.equal(x[0, 0], image[0, 0])  # the acquisition varies
    assert seen == {(1, 1, 1), (6, 1, 1)}


def test_relative_curve_ignores_the_scanner_gain_and_tells_washout_from_rising():
    """The lesion's curve as a fraction of its own pre-contrast signal: a bias field or
    another scanner's gain scales all phases alike and leaves it unchanged."""
    import numpy as np

    from reportgen.model.lesion_reader import relative_curve

    def lesion(curve):
        image = np.full((7, 12, 12, 6), 0.2, np.float32)
        image[3:, 3:9, 3:9, 1:5] = 0.4 * (1.0 + np.array(curve))[:, None, None, None]
        return image, image[3] > 0.3

    rising, region = lesion([0.0, 0.25, 0.55, 0.85])
    washout, _ = lesion([0.0, 2.0, 1.5, 1.2])
    gain = np.linspace(0.7, 1.3, 12)[None, :, None, None]  # a bias field across the lesion
    assert np.allclose(relative_curve(rising, region), relative_curve(rising * gain, region))
    assert np.allclose(relative_curve(rising, region)[:3], [0.25, 0.55, 0.85], atol=1e-5)
    early_rising, change_rising = relative_curve(rising, region)[3:]
    early_washout, change_washout = relative_curve(washout, region)[3:]
    assert early_rising < 0.5 < early_washout and change_washout < 0 < change_rising


def test_small_parts_weigh_as_much_as_the_primary_in_the_outline_loss():
    from reportgen.model.losses import OUTLINE_WEIGHTING, part_size_weights

    labels = torch.zeros(1, 20, 20, 10, dtype=torch.long)
    labels[0, 2:12, 2:12, 2:8] = 1  # a primary of 600 voxels
    labels[0, 16:18, 16:18, 4:6] = 2  # a deposit of 8
    weights = part_size_weights(labels, 3, OUTLINE_WEIGHTING)
    assert weights[0, 5, 5, 5] == 1.0 and weights[0, 0, 0, 0] == 1.0
    assert weights[0, 16, 16, 4] == 8.0  # 64 / 8 voxels


def test_present_dice_leaves_a_class_the_batch_lacks_to_cross_entropy():
    """A batch without implants: the all-class Dice punishes any implant probability (its
    Dice is 1 / (mass + 1)), the present-class Dice does not; with every class the same."""
    from reportgen.model.losses import segmentation_loss

    labels = torch.zeros(2, 16, 16, 8, dtype=torch.long)
    labels[:, 2:10, 2:10, 2:6] = 1
    logits = torch.zeros(2, 4, 8, 8, 4)
    logits[:, 1, 1:5, 1:5, 1:3] = 4.0
    raised = logits.clone()
    raised[:, 3] += 1.0  # more implant probability everywhere
    grows = {
        dice: float(segmentation_loss(raised, labels, dice=dice))
        - float(segmentation_loss(logits, labels, dice=dice))
        for dice in ("pooled", "present")
    }
    assert grows["pooled"] > grows["present"] > 0  # cross-entropy still punishes it
    labels[0, 12:14, 12:14, 2:4] = 3
    labels[1, 12:14, 12:14, 2:4] = 2  # a batch holding every class: the two agree
    every = segmentation_loss(logits, labels, dice="pooled")
    assert torch.isclose(every, segmentation_loss(logits, labels, dice="present"))


def test_rare_class_studies_make_up_their_share_of_the_outline_epoch():
    """One study in ten holds implants (class 3): drawn with a 30% share, they are about
    30% of an epoch's studies; with no rare class every study is drawn once."""
    from reportgen.model.field_training import _epoch_order, rare_class_weights

    labels = [torch.zeros(4, 4, 2, dtype=torch.long) for _ in range(100)]
    for i, y in enumerate(labels):
        y[0, 0, 0] = 1  # every study has a lesion
        if i % 10 == 0:
            y[3, 3, 1] = 3  # a few hold an implant
    weights = rare_class_weights(labels, 0.3, classes=4)
    assert weights is not None and torch.isclose(weights.sum(), torch.tensor(1.0))
    assert torch.isclose(weights[::10].sum(), torch.tensor(0.3))
    generator = torch.Generator().manual_seed(0)
    draws = [i for _ in range(50) for i in _epoch_order(list(range(100)), weights, generator)]
    assert len(draws) == 5000
    assert abs(np.mean([i % 10 == 0 for i in draws]) - 0.3) < 0.03
    common = [y.clamp(max=1) for y in labels]  # only lesions: nothing is rare
    assert rare_class_weights(common, 0.3, classes=4) is None
    assert sorted(_epoch_order(list(range(100)), None, generator)) == list(range(100))


def test_detached_parts_are_counted_apart_from_reaches():
    import numpy as np

    from reportgen.model.field_reader import DETACHED, detached

    labels = np.zeros((20, 20, 10), np.int64)
    labels[5:10, 5:10, 3:7] = 1  # primary
    labels[10:13, 6:8, 4:6] = 2  # an extension reaching out of it
    labels[16:18, 16:18, 1:3] = 2  # a deposit apart
    row = detached(labels, np.array([4.0, 4.0, 4.0]), np.array([28.0, 28.0, 18.0]))
    assert len(row) == DETACHED
    assert np.isclose(row[0], np.log1p(1)) and np.isclose(row[1], np.log1p(8))
    assert row[2:8] == [36.0, 36.0, -14.0, 40.0, 40.0, -10.0]  # the deposit only
    assert row[8:] == [0.0] * 8  # no nodes


def test_reader_evaluation_reports_the_unconstrained_baseline(cervix, cli, tmp_path):
    """A reader's unconstrained baseline reads the stage directly (no rules): it is scored
    beside the model, and its stated stage need not be the one the rules give."""
    data, model, _ = cervix
    result = cli(
        "evaluate", "--data", data, "--model", model, "--out", tmp_path / "eval",
        "--train-data", data, "--limit", "4",
    )  # fmt: skip
    assert result.code == 0, result.err
    metrics = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["results"]
    assert set(metrics) == {"model[all]", "baseline:retrieval", "baseline:unconstrained"}
    assert metrics["model[all]"]["rule_consistency"] == 1.0  # the model's stage is derived
    # the primary's outline scored against its label, beside its box
    assert 0.0 <= metrics["model[all]"]["outline_dice"] <= 1.0
    assert "| Dice |" in (tmp_path / "eval" / "evaluation.md").read_text()
    free = metrics["baseline:unconstrained"]
    assert free["studies"] == 4 and 0.0 <= free["stage_accuracy"] <= 1.0
    assert 0.0 <= free["rule_consistency"] <= 1.0


def test_direct_headline_states_its_own_stage_and_the_rules_disagreement_shows(cervix, tmp_path):
    from reportgen.model.data import load_examples
    from reportgen.model.direct_baseline import DirectHeadline, library_features

    data, model_dir, _ = cervix
    generator = generators.open_generator(model_dir)
    examples = load_examples(data, generator.model.input_cfg, tmp_path, "figo_cervix_2018")
    embeddings, measured = library_features(generator.model, examples.images)
    assert torch.allclose(embeddings, generator.image_embeddings(examples.images), atol=1e-5)
    direct = DirectHeadline(
        generator.model, generator.template, measured, examples.reports, iterations=20
    )
    item = examples.images[0]
    draft = generator.draft_tensors(
        "s0", item["image"][None], item["present"][None], np.eye(4)
    ).report
    own = library_features(generator.model, [item])[1][0]
    free = direct.report(draft, own)
    assert free.derived["stage"].value == direct.predict(own)
    assert free.fields == draft.fields
    problems = validate_report(free, generator.template).problems
    disagrees = free.derived["stage"].value != draft.derived["stage"].value
    assert disagrees == any(p.rule == "derivation" for p in problems)


def test_augmented_reading_adds_a_varied_copy_of_each_study_measured_afresh(adnexa, tmp_path):
    """`--augment-reading`: each training study is read once more as another acquisition
    might give it (never flipped, so its truth still applies), outlined and measured anew."""
    from reportgen.model.augment import varied_copy
    from reportgen.model.data import load_examples
    from reportgen.model.lesion_training import lesion_rows

    data, model_dir = adnexa
    model = load_reader(model_dir)
    examples = load_examples(data, model.input_cfg, tmp_path, "orads_mri")
    images, present, masks, affines = [], [], [], []
    for i in range(3):
        arrays = examples.images.arrays(i)
        images.append(torch.from_numpy(arrays["image"]))
        present.append(torch.from_numpy(arrays["present"]))
        masks.append(arrays["mask"])
        affines.append(arrays["affine"])
    idx = [0, 1, 2]
    plain = lesion_rows(model, images, present, masks, affines, examples, idx)
    varied = lesion_rows(
        model, images, present, masks, affines, examples, idx, torch.Generator().manual_seed(0)
    )
    assert len(varied[0]) > len(plain[0])  # the varied copies' outlined components
    x = images[0][None].float()
    copy = varied_copy(x, torch.Generator().manual_seed(1))
    assert copy.shape == x.shape and not torch.equal(copy, x)
    # never flipped: the brightest T2W voxels are still where they were, and still bright
    t2 = x[0, 0] > x[0, 0].quantile(0.999)
    assert (copy[0, 0][t2].mean() > copy[0, 0].mean()).item()


def test_cli_train_reader_refuses_a_share_outside_zero_to_one(cli, tmp_path):
    out = tmp_path / "reader"
    result = cli("train-reader", "--data", str(tmp_path), "--out", str(out), "--rare-share", "1.5")
    assert_refused(result, "--rare-share")
    assert not out.exists()
