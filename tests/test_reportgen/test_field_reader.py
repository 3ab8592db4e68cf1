"""Staging reader: trains on phantoms, drafts valid FIGO reports, is chosen by template."""

from __future__ import annotations

import json

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


@pytest.fixture(scope="module")
def cervix(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    data = root / "data"
    synth_dataset(data, 10, SynthOptions(domain="cervix", seed=21), workers=2)
    model = root / "model"
    summary = train_field_reader(
        FieldTrainArgs(data=data, out=model, config="tiny", epochs=2, batch_size=4),
        log=lambda _: None,
    )
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
