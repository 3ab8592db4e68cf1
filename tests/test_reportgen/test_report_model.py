"""Report model: template automaton, constrained decoding, train -> generate -> evaluate, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_refused

from reportgen.data import read_manifest
from reportgen.model.decoding import draft_tokens
from reportgen.model.generate import GenerateOptions, ReportGenerator
from reportgen.model.grammar import GrammarError, TemplateGrammar
from reportgen.model.vocab import ReportVocab, value_token
from reportgen.report import Report, load_template, validate_report
from reportgen.report.values import plain
from reportgen.synth import SynthOptions, synth_dataset


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Tiny breast studies, a tiny MAE encoder and a tiny report model trained on them."""
    from pretrain_mae.masking import MaskingOptions
    from reportgen.model.mae_training import TrainArgs, train
    from reportgen.model.pretraining import study_dataset
    from reportgen.model.training import ReportTrainArgs, train_report_model

    root = tmp_path_factory.mktemp("report-model")
    synth_dataset(
        root / "train",
        12,
        SynthOptions(protocol="low_resolution", domain="breast", seed=31, malignant_fraction=0.6),
        workers=1,
    )
    synth_dataset(
        root / "heldout",
        3,
        SynthOptions(protocol="low_resolution", domain="breast", seed=32, malignant_fraction=1.0),
        workers=1,
    )
    train(
        TrainArgs(
            out=root / "mae",
            config="tiny",
            steps=2,
            batch_size=2,
            checkpoint_every=2,
            masking=MaskingOptions(strategy="random"),
            progress=False,
        ),
        study_dataset(root / "train", root / "cache"),
        log=lambda *_: None,
    )
    train_report_model(
        ReportTrainArgs(
            data=root / "train",
            encoder=root / "mae",
            out=root / "model",
            config="tiny",
            steps=40,
            batch_size=6,
            detector_steps=30,
            segmenter_steps=20,
            cache_dir=root / "cache-model",
            progress=False,
        ),
        log=lambda *_: None,
    )
    return root


def _truth_reports(folder):
    return [
        Report.model_validate(row["report"]) for row in read_manifest(folder / "manifest.jsonl")
    ]


def test_grammar_round_trips_reports_and_allows_each_of_their_tokens(bench):
    template = load_template("birads_mri")
    grammar = TemplateGrammar(template, ReportVocab.for_template(template))
    for report in _truth_reports(bench / "train"):
        ids = grammar.encode(report)
        state = grammar.parse(ids[1:])
        assert state.done
        assert state.fields == plain(report.fields)
        assert [plain(f.fields) for f in report.findings] == state.findings
        for k in range(1, len(ids)):
            assert ids[k] in grammar.allowed(ids[1:k])


def test_grammar_offers_only_allowed_values_and_conditional_fields():
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab)
    first = grammar.allowed([])
    assert first == {vocab.id("<f:fgt_amount>")}
    values = grammar.allowed([vocab.id("<f:fgt_amount>")])
    assert values == {vocab.id(value_token(v)) for v in template.field("fgt_amount").values}
    # a finding of type "focus" never offers mass-only fields (shape, margin)
    prefix = []
    while True:
        allowed = grammar.allowed(prefix)
        if vocab.id("<finding>") in allowed:
            break
        prefix.append(min(allowed))
    prefix += [vocab.id("<finding>"), vocab.id("<f:type>"), vocab.id(value_token("focus"))]
    seen = set()
    for _ in range(40):
        allowed = grammar.allowed(prefix)
        seen |= {vocab.token(t) for t in allowed}
        if vocab.id("<findings_end>") in allowed:
            break
        prefix.append(min(allowed))
    assert "<f:margin>" not in seen and "<f:shape>" not in seen
    assert "<f:kinetics_initial>" in seen
    # size only on the field's grid and in its range
    lo, hi = template.field("size_mm").range
    sizes = {
        vocab.token(t) for t in grammar.allowed(prefix[: prefix.index(vocab.id("<f:size_mm>")) + 1])
    }
    assert sizes == {f"<n:{k}>" for k in range(int(lo), int(hi) + 1)}
    with pytest.raises(GrammarError):
        grammar.parse([vocab.id("<f:bpe_level>")])  # out of order


def test_training_targets_leave_out_what_the_kept_sequences_cannot_show(bench):
    """A training step that hid the DCE series must not ask for kinetics or BPE (the draft
    at inference cannot write them); with every sequence kept the full report is asked."""
    from reportgen.model.training import TargetReports

    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab)
    reports = _truth_reports(bench / "train")
    names = ["T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3"]
    targets = TargetReports(grammar, reports, names, vocab.pad_id)
    study = next(i for i, r in enumerate(reports) if any(f.fields for f in r.findings))
    every = [True] * len(names)
    no_dce = [not n.startswith("DCE") for n in names]
    full = {vocab.token(t) for t in targets.encode(study, every)}
    hidden = {vocab.token(t) for t in targets.encode(study, no_dce)}
    assert targets.encode(study, every) == grammar.encode(reports[study])
    assert "<f:bpe_level>" in full and "<f:bpe_level>" not in hidden
    assert "<f:kinetics_delayed>" not in hidden and "<f:t2_signal>" in hidden
    ids, attn = targets.batch([study, study], torch.tensor([every, no_dce]))
    assert ids.shape[0] == 2 and int(attn[1].sum()) < int(attn[0].sum())


def test_a_finding_only_contrast_shows_is_no_training_target_without_contrast():
    """Hiding DCE from a study with a non-mass enhancement asks for the report those
    sequences can show (no such finding: the grammar forbids it there, and asking for it
    stopped `reportgen train`), as evaluation scores it (`restrict_to_study`)."""
    from helpers.report_examples import BREAST, SPICULATED

    from reportgen.model.training import TargetReports
    from reportgen.report import build_report
    from reportgen.report.assessable import restrict_to_study
    from reportgen.report.schema import Provenance, StudyRef

    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab)
    nme = {
        "type": "non_mass_enhancement", "nme_distribution": "nme_segmental",
        "nme_pattern": "nme_clumped", "kinetics_initial": "initial_fast",
        "kinetics_delayed": "delayed_plateau", "t2_signal": "t2_isointense",
        "diffusion": "diffusion_restricted", "laterality": "left", "clock": "clock_2",
        "depth": "depth_middle", "size_mm": 40,
    }  # fmt: skip
    report = build_report(
        template, BREAST, [SPICULATED, nme], study=StudyRef(study_id="s"),
        provenance=Provenance(source="synthetic"),
    )  # fmt: skip
    names = ["T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3"]
    targets = TargetReports(grammar, [report], names, vocab.pad_id)
    no_dce = [not n.startswith("DCE") for n in names]
    hidden = targets.encode(0, no_dce)
    kept = [n for n, k in zip(names, no_dce, strict=True) if k]
    seen = restrict_to_study(report, template, kept)
    assert len(seen.findings) == 1 and hidden == grammar.for_sequences(kept).encode(seen)
    assert "<v:non_mass_enhancement>" not in {vocab.token(t) for t in hidden}
    assert "<v:non_mass_enhancement>" in {vocab.token(t) for t in targets.encode(0, [True] * 7)}


def test_every_decoding_strategy_respects_the_template(bench):
    generator = ReportGenerator(bench / "model")
    template = generator.template
    study = bench / "heldout" / read_manifest(bench / "heldout" / "manifest.jsonl")[0]["dir"]
    from reportgen.io import load_study

    image, present, _ = generator.tensors(load_study(study))
    memory = generator.model.encode(image, present)
    torch.manual_seed(0)
    for kwargs in ({}, {"num_beams": 3}, {"do_sample": True, "temperature": 1.5}):
        for draft in draft_tokens(
            generator.model, generator.vocab, generator.grammar, memory, **kwargs
        ):
            assert generator.grammar.parse(draft.ids).done
    # unconstrained sampling from an under-trained model breaks the template: the constraint is real
    torch.manual_seed(0)
    broken = 0
    for _ in range(5):
        free = draft_tokens(
            generator.model,
            generator.vocab,
            None,
            memory,
            do_sample=True,
            temperature=2.0,
            max_new_tokens=60,
        )[0]
        try:
            broken += not generator.grammar.parse(free.ids).done
        except GrammarError:
            broken += 1
    assert broken > 0
    with pytest.raises(ValueError, match="image tokens"):
        draft_tokens(generator.model, generator.vocab, generator.grammar, None)
    assert template.id == "birads_mri"


def test_generated_reports_are_valid_with_evidence_and_provenance(bench, tmp_path):
    from reportgen.io import load_study

    generator = ReportGenerator(bench / "model")
    for row in read_manifest(bench / "heldout" / "manifest.jsonl"):
        study = load_study(bench / "heldout" / row["dir"])
        draft = generator.draft(study, GenerateOptions(explain=True, explain_dir=tmp_path / "ev"))
        report = draft.report
        assert validate_report(report, generator.template).valid
        assert (
            report.provenance.source == "model" and len(report.provenance.checkpoint_sha256) == 64
        )
        assert "not for clinical use" in report.notice
        for finding in report.findings:
            ev = finding.evidence
            assert ev is not None and set(ev.sequence_contributions) == set(
                report.study.sequences_used
            )
            # paths are relative to the folder holding the evidence folder (where the report goes)
            assert ev.heatmap.startswith("ev/")
            assert (tmp_path / ev.heatmap).exists() and (tmp_path / ev.key_slice_png).exists()
            assert 0.0 <= ev.malignancy_probability <= 1.0
    # a subset of sequences: the missing ones are reported as missing
    study = load_study(
        bench / "heldout" / read_manifest(bench / "heldout" / "manifest.jsonl")[0]["dir"]
    )
    for name in ["DCE_0", "DCE_1", "DCE_2", "DCE_3"]:
        study.sequences.pop(name)
    report = generator.draft(study, GenerateOptions(explain=False)).report
    assert validate_report(report, generator.template).valid
    assert "DCE_0" in report.study.sequences_missing and "DCE_0" not in report.study.sequences_used


def test_cli_generate_evaluate_similar(bench, cli, tmp_path):
    study = bench / "heldout" / read_manifest(bench / "heldout" / "manifest.jsonl")[0]["dir"]
    out = tmp_path / "report.json"
    result = cli("generate", study, "--model", bench / "model", "--out", out)
    assert result.code == 0, result.err
    report = Report.from_json(out.read_text())
    assert report.validation.valid
    assert cli("validate", out).code == 0
    text = cli(
        "generate",
        study,
        "--model",
        bench / "model",
        "--format",
        "text",
        "--lang",
        "zh",
        "--no-explain",
    )
    assert text.code == 0 and "BI-RADS" in text.out
    ev = cli(
        "evaluate",
        "--data",
        bench / "heldout",
        "--model",
        bench / "model",
        "--out",
        tmp_path / "eval",
        "--subsets",
        "all,t2_only",
        "--train-data",
        bench / "train",
        "--limit",
        "2",
    )
    assert ev.code == 0, ev.err
    metrics = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["results"]
    assert set(metrics) == {
        "model[all]",
        "model[t2_only]",
        "baseline:unconstrained",
        "baseline:retrieval",
    }
    assert metrics["model[all]"]["template_compliance"] == 1.0
    assert 0.0 <= metrics["model[all]"]["field_accuracy"] <= 1.0
    # every truth lesion and every unmatched finding is accounted for, by study position
    rows = [json.loads(r) for r in (tmp_path / "eval" / "lesions.jsonl").read_text().splitlines()]
    assert [r["study"] for r in rows] == [0, 1]
    lesion = metrics["model[all]"]["lesion"]
    described = [d for r in rows for d in r["described"]]
    assert sum("lesion" in d for d in described) == lesion["lesions"]
    matched = sum("lesion" in d and not d.get("missed") for d in described)
    drafted = matched + sum(bool(d.get("false")) for d in described)
    assert lesion["lesion_precision"] == (matched / drafted if drafted else None)
    # each truth lesion's box IoU is there, and the study-level IoU is their mean
    ious = [d["box_iou"] for d in described if "lesion" in d]
    assert len(ious) == lesion["lesions"] and all(0.0 <= v <= 1.0 for v in ious)
    if ious:
        assert abs(sum(ious) / len(ious) - metrics["model[all]"]["detection_iou"]) < 2e-3
    sim = cli(
        "similar", study, "--library", bench / "train", "--model", bench / "model", "--top", "2"
    )
    assert sim.code == 0 and len(sim.out.strip().splitlines()) == 2


def test_lesion_centred_and_whole_study_models_both_train_and_draft(bench, cli, tmp_path):
    from reportgen.model.modeling import load_model

    model, _ = load_model(bench / "model")
    assert model.cfg.roi is not None and model.cfg.input_grid()[1] == (4.0, 4.0, 4.0)
    assert "Lesion-centred reading" in (bench / "model" / "README.md").read_text()
    whole = tmp_path / "whole"
    args = ["--data", bench / "train", "--encoder", bench / "mae", "--config", "tiny"]
    result = cli("train", *args, "--out", whole, "--steps", "2", "--no-roi")
    assert result.code == 0, result.err
    plain_model, _ = load_model(whole)
    assert plain_model.cfg.roi is None and not hasattr(plain_model, "detector")
    study = bench / "heldout" / read_manifest(bench / "heldout" / "manifest.jsonl")[0]["dir"]
    drafted = cli("generate", study, "--model", whole, "--no-explain", "--out", tmp_path / "r.json")
    assert drafted.code == 0, drafted.err
    assert Report.from_json((tmp_path / "r.json").read_text()).validation.valid
    refused = cli("train", *args, "--out", tmp_path / "p", "--freeze", "partial")
    assert_refused(refused, "frozen encoder")


def test_cli_refusals(bench, cli, tmp_path):
    study = bench / "heldout" / read_manifest(bench / "heldout" / "manifest.jsonl")[0]["dir"]
    assert_refused(cli("generate", study, "--model", tmp_path), "not a report model directory")
    assert_refused(
        cli("generate", study, "--model", bench / "model", "--format", "docx"), "--format"
    )
    assert_refused(
        cli("generate", tmp_path / "nope.nii.gz", "--model", bench / "model"), "no such file"
    )
    assert_refused(
        cli("train", "--data", bench / "train", "--encoder", tmp_path, "--out", tmp_path / "m"),
        "not a pretraining checkpoint",
    )
    assert_refused(
        cli(
            "train",
            "--data",
            bench / "train",
            "--encoder",
            bench / "mae",
            "--out",
            tmp_path / "m",
            "--freeze",
            "melted",
        ),
        "--freeze",
    )
    assert_refused(
        cli(
            "evaluate",
            "--data",
            bench / "heldout",
            "--model",
            bench / "model",
            "--subsets",
            "no_t1",
        ),
        "unknown subset",
    )


def test_demo_drafts_a_valid_report_with_the_bundled_model(cli, tmp_path):
    from reportgen.model.generate import BUNDLED_MODEL

    size = sum(p.stat().st_size for p in BUNDLED_MODEL.rglob("*") if p.is_file())
    assert size <= 30 * 1024 * 1024, "the bundled breast model must stay within 30 MB (issue 37)"
    assert "not for clinical use" in (BUNDLED_MODEL / "README.md").read_text()
    result = cli("demo", "--out", tmp_path)
    assert result.code == 0, result.err
    report = Report.from_json((tmp_path / "draft_report.json").read_text())
    assert report.validation.valid and report.provenance.source == "model"
    assert "not for clinical use" in result.out


def test_cli_generate_states_the_indication_given_and_refuses_a_bad_one(bench, cli, tmp_path):
    row = read_manifest(bench / "heldout" / "manifest.jsonl")[0]
    study = bench / "heldout" / row["dir"]
    out = tmp_path / "draft.json"
    args = ("generate", study, "--model", bench / "model", "--no-explain", "--out", out)
    assert cli(*args, "--indication", "Screening, BRCA1 carrier").code == 0
    assert Report.from_json(out.read_text()).study.indication == "Screening, BRCA1 carrier"
    before = out.read_bytes()
    assert_refused(cli(*args, "--indication", "x" * 600), "--indication")
    assert_refused(
        cli("generate", bench / "heldout", "--out", tmp_path / "many", "--indication", "a"),
        "one study",
    )
    assert out.read_bytes() == before  # a refused call changed nothing


def test_cli_generate_dates_a_study_as_given_and_refuses_a_day_that_is_not_one(
    bench, cli, tmp_path
):
    """A NIfTI study carries no date: `--study-date` gives it; the text, the FHIR report's
    effective time and the JSON state it; a date that is no calendar day is refused."""
    row = read_manifest(bench / "heldout" / "manifest.jsonl")[0]
    study = bench / "heldout" / row["dir"]
    out = tmp_path / "draft.json"
    args = ("generate", study, "--model", bench / "model", "--no-explain")
    assert cli(*args, "--out", out).code == 0
    assert Report.from_json(out.read_text()).study.study_date is None  # none in NIfTI
    assert cli(*args, "--out", out, "--study-date", "2026-11-30").code == 0
    assert Report.from_json(out.read_text()).study.study_date == "2026-11-30"
    text = tmp_path / "draft.txt"
    assert cli(*args, "--out", text, "--format", "text", "--study-date", "2026-11-30").code == 0
    assert "Study date: 2026-11-30" in text.read_text()
    fhir = tmp_path / "draft.fhir.json"
    assert cli(*args, "--out", fhir, "--format", "fhir", "--study-date", "20261130").code == 0
    bundle = json.loads(fhir.read_text())
    assert bundle["entry"][0]["resource"]["effectiveDateTime"] == "2026-11-30"
    before = out.read_bytes()
    for bad in ("2026-02-30", "yesterday", "2026-13-01"):
        assert_refused(cli(*args, "--out", out, "--study-date", bad), "--study-date")
    assert out.read_bytes() == before


def test_cli_generate_drafts_a_folder_of_studies_and_refuses_the_bad_one(bench, cli, tmp_path):
    import shutil

    batch = tmp_path / "batch"
    rows = read_manifest(bench / "heldout" / "manifest.jsonl")[:2]
    for row in rows:
        shutil.copytree(bench / "heldout" / row["dir"], batch / row["dir"])
    broken = batch / "broken"
    shutil.copytree(bench / "heldout" / rows[0]["dir"], broken)
    (broken / "T2W.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert_refused(cli("generate", batch, "--model", bench / "model"), "--out")
    out = tmp_path / "drafts"
    result = cli("generate", batch, "--model", bench / "model", "--no-explain", "--out", out)
    assert result.code == 1, result.err  # one study got no draft
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["drafted"], summary["refused"], summary["failed"]) == (2, 1, 0)
    refused = next(s for s in summary["studies"] if s["status"] == "refused")
    assert refused["source"] == "broken" and "T2W.nii.gz" in refused["detail"]
    for row in rows:
        assert Report.from_json((out / f"{row['id']}.json").read_text()).validation.valid
    assert "3 studies" in result.err and "not for clinical use" in result.err.lower()


def test_the_report_says_which_phases_of_a_long_dynamic_it_read(bench):
    from reportgen.io import load_study
    from reportgen.model.generate import GenerateOptions, ReportGenerator

    study = load_study(
        bench / "heldout" / read_manifest(bench / "heldout" / "manifest.jsonl")[0]["dir"]
    )
    study.metadata["dce_phases"] = "dynamic phases chosen: series 20 has 74 phases; ..."
    report = ReportGenerator(bench / "model").draft(study, GenerateOptions(explain=False)).report
    notes = [p for p in report.validation.problems if p.rule == "dce_phases"]
    assert len(notes) == 1 and "74 phases" in notes[0].message


def test_calibrate_writes_a_calibration_that_every_later_draft_applies(bench, cli, tmp_path):
    """`reportgen calibrate` fits on held-out drafts' raw confidences and writes
    calibration.json into the model; the model's drafts then carry calibrated confidences
    (the fitted map of the raw ones) and the threshold the formats mark values by."""
    import shutil

    from reportgen.io import load_study
    from reportgen.model.generators import open_generator
    from reportgen.report.calibration import Calibration

    model = tmp_path / "model"
    shutil.copytree(bench / "model", model)
    result = cli(
        "calibrate", "--data", bench / "heldout", "--model", model, "--out", tmp_path / "cal"
    )
    assert result.code == 0, result.err
    assert "ECE" in result.out and (model / "calibration.json").is_file()
    calibration = Calibration.load(model)
    study = load_study(
        bench / "heldout" / read_manifest(bench / "heldout" / "manifest.jsonl")[0]["dir"]
    )
    options = GenerateOptions(explain=False)
    raw = open_generator(bench / "model").draft(study, options).report
    calibrated = open_generator(model).draft(study, options).report
    assert raw.provenance.check_below is None
    assert calibrated.provenance.check_below == calibration.check_below
    pairs = [(k, v, calibrated.fields[k]) for k, v in raw.fields.items()]
    for r, c in zip(raw.findings, calibrated.findings, strict=True):
        pairs += [(k, v, c.fields[k]) for k, v in r.fields.items()]
    confident = [(k, a, b) for k, a, b in pairs if a.confidence is not None]
    assert confident
    for key, before, after in confident:
        assert after.value == before.value
        assert after.confidence == pytest.approx(calibration.confidence(key, before.confidence))
    refused = cli("calibrate", "--data", bench / "heldout", "--model", tmp_path / "nothing")
    assert_refused(refused, "not a model folder")
