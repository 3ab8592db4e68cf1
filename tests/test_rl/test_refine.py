"""Rewards, PPO pieces, and `reportgen refine` end to end on a log filled by the app's code."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import assert_refused
from helpers.simulate import correct_drafts_of

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.generate import ReportGenerator
from reportgen.report import Report, build_report, load_template
from reportgen.report.values import plain
from reportgen.review.store import RewardLog
from reportgen.synth import SynthOptions, synth_dataset
from rl.ppo import PPOConfig, PPOTrainer, gae, leave_one_out, whiten
from rl.rewards import correction_reward

pytestmark = pytest.mark.slow


def variant(report: Report, **finding_changes) -> Report:
    template = load_template(report.template.id)
    findings = [plain(f.fields) for f in report.findings]
    findings[0].update(finding_changes)
    return build_report(
        template, plain(report.fields), findings, study=report.study, provenance=report.provenance
    )


STUDIES = 16


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    """Phantoms drafted by the bundled model and corrected by simulated clinicians (enough
    that at least eight drafts need a change, as the reward model asks)."""
    root = tmp_path_factory.mktemp("refine")
    synth_dataset(
        root / "studies",
        STUDIES,
        SynthOptions(protocol="low_resolution", domain="breast", seed=404, malignant_fraction=0.5),
        workers=1,
    )
    synth_dataset(
        root / "heldout",
        3,
        SynthOptions(protocol="low_resolution", domain="breast", seed=9404, malignant_fraction=0.5),
        workers=1,
    )
    db = str(root / "log.db")
    generator = ReportGenerator()
    assert (
        correct_drafts_of(RewardLog(db), root / "studies", generator, random.Random(0)) == STUDIES
    )
    return root, db, generator


def test_reward_weights_follow_clinical_severity(corrected):
    root, _, _ = corrected
    truth = Report.from_json(next((root / "studies").glob("*/report.json")).read_text())
    assert correction_reward(truth, truth).reward == pytest.approx(1.0)
    f = truth.findings[0].fields
    clock = "clock_3" if f["clock"].value != "clock_3" else "clock_9"
    wrong_clock = correction_reward(variant(truth, clock=clock), truth).reward
    size = float(f["size_mm"].value)
    small_size = correction_reward(variant(truth, size_mm=size + 1), truth).reward
    big_size = correction_reward(variant(truth, size_mm=size + 15), truth).reward
    assert 1.0 > small_size > big_size
    other_side = "left" if f["laterality"].value == "right" else "right"
    assert correction_reward(variant(truth, laterality=other_side), truth).reward < wrong_clock
    rebuilt = build_report(
        load_template(truth.template.id),
        plain(truth.fields),
        [],
        study=truth.study,
        provenance=truth.provenance,
    )
    assert (
        correction_reward(rebuilt, truth).reward < wrong_clock
    )  # a missed finding costs more than a clock


def test_gae_and_whitening_match_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.1
    d1 = 0.0 + 0.1 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    expected = torch.tensor([[d0 + 0.5 * (d1 + 0.5 * d2), d1 + 0.5 * d2, d2, 0.0]])
    assert torch.allclose(adv, expected) and torch.allclose(ret, expected + values)
    w = whiten(adv, mask)
    assert abs(float((w * mask).sum())) < 1e-5


def test_ppo_losses_are_finite_and_kl_rises_from_zero(corrected):
    root, _, _ = corrected
    generator = ReportGenerator()
    rows = read_manifest(root / "studies" / "manifest.jsonl")[:4]
    tensors = [generator.tensors(load_study(root / "studies" / r["dir"])) for r in rows]
    truth = {
        r["dir"]: Report.from_json((root / "studies" / r["dir"] / "report.json").read_text())
        for r in rows
    }
    images, present = torch.cat([t[0] for t in tensors]), torch.cat([t[1] for t in tensors])
    trainer = PPOTrainer(
        generator, PPOConfig(batch_size=4, minibatch_size=2, ppo_epochs=2, lr=1e-4)
    )
    reference = {k: v.clone() for k, v in trainer.reference.state_dict().items()}

    def score(reports, ids):
        return [correction_reward(r, truth[i]).reward for r, i in zip(reports, ids, strict=True)]

    ids = [r["dir"] for r in rows]
    first = trainer.train_step(images, present, ids, score)
    assert first["kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before any update
    assert first["valid"] == 1.0  # sampled under the constraints: every rollout is a report
    second = trainer.train_step(images, present, ids, score)
    assert second["kl"] > 1e-4
    for stats in (first, second):
        assert 0.0 <= stats["clipfrac"] <= 1.0 and stats["entropy"] > 0 and stats["vf"] >= 0
    assert all(torch.equal(reference[k], v) for k, v in trainer.reference.state_dict().items())
    assert trainer.kl.value != pytest.approx(0.05, abs=0)  # adaptive coefficient moved


def test_leave_one_out_baseline_compares_drafts_of_the_same_study():
    scores = torch.tensor([1.0, 0.0, 0.5, 5.0, 5.0, 8.0])
    out = leave_one_out(scores, 3)
    # first study: 1 - mean(0, 0.5), 0 - mean(1, 0.5), 0.5 - mean(1, 0)
    assert torch.allclose(out[:3], torch.tensor([0.75, -0.75, 0.0]))
    # an easy study (all drafts score high) gets no credit for being easy
    assert torch.allclose(out[3:], torch.tensor([-1.5, -1.5, 3.0]))
    assert torch.equal(leave_one_out(scores, 1), scores)


def test_ppo_with_several_drafts_per_study_scores_each_draft(corrected):
    root, _, _ = corrected
    generator = ReportGenerator()
    rows = read_manifest(root / "studies" / "manifest.jsonl")[:2]
    tensors = [generator.tensors(load_study(root / "studies" / r["dir"])) for r in rows]
    images, present = torch.cat([t[0] for t in tensors]), torch.cat([t[1] for t in tensors])
    trainer = PPOTrainer(
        generator, PPOConfig(batch_size=6, samples_per_study=3, minibatch_size=3, lr=1e-4)
    )
    seen: list[str] = []

    def score(reports, ids):
        seen.extend(ids)
        return [float(len(r.findings)) if r is not None else -1.0 for r in reports]

    ids = [r["dir"] for r in rows]
    stats = trainer.train_step(images, present, ids, score)
    assert seen == [ids[0]] * 3 + [ids[1]] * 3  # each study drafted three times, in order
    assert stats["valid"] == 1.0 and stats["kl"] == pytest.approx(0.0, abs=1e-5)
    assert trainer.train_step(images, present, ids, score)["kl"] > 1e-4


def test_refine_end_to_end_with_guard_and_exact_resume(corrected, cli, tmp_path):
    root, db, _ = corrected
    common = [
        "--db",
        db,
        "--studies",
        root / "studies",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "1",
    ]
    result = cli(
        "refine", *common, "--out", tmp_path / "a", "--steps", "3", "--heldout", root / "heldout"
    )
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "a" / "refine_summary.json").read_text())
    assert summary["corrections"] == STUDIES and summary["final"]["step"] == 3
    assert set(summary["reference_metrics"]) >= {
        "field_accuracy",
        "headline_accuracy",
        "mean_reward",
    }
    assert summary["recommended"] == (not summary["worse_on"])
    assert (tmp_path / "a" / "model" / "NOT_RECOMMENDED").exists() == (not summary["recommended"])
    assert "RECOMMENDED" in result.out
    # stop after 2 steps, resume to 3: the same weights as the uninterrupted run
    assert cli("refine", *common, "--out", tmp_path / "b", "--steps", "2").code == 0
    assert cli("refine", *common, "--out", tmp_path / "b", "--steps", "3", "--resume").code == 0
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    stats = cli("rewards", "--db", db, "--json")
    assert stats.code == 0 and json.loads(stats.out)["corrections"] == STUDIES


def test_refine_refuses_too_few_corrections_and_other_templates(corrected, cli, tmp_path):
    root, db, _ = corrected
    empty = str(tmp_path / "empty.db")
    RewardLog(empty)
    assert_refused(
        cli("refine", "--db", empty, "--studies", root / "studies", "--out", tmp_path / "x"),
        "at least 8",
    )
    from rl.refine import corrected_targets

    records = list(RewardLog(db).corrections())
    records[0] = records[0].model_copy(update={"template_id": "figo_cervix_2018"})
    with pytest.raises(Exception, match="same template"):
        corrected_targets(records, root / "studies", "birads_mri", ReportGenerator())


def test_reward_model_trains_with_trl_and_reports_heldout_pairwise_accuracy(
    corrected, cli, tmp_path
):
    from rl.reward_model import ReportScorer

    _root, db, _ = corrected
    result = cli("reward-model", "--db", db, "--out", tmp_path / "rm", "--epochs", "5")
    assert result.code == 0, result.err
    info = json.loads((tmp_path / "rm" / "reward_model_eval.json").read_text())
    assert info["heldout_pairs"] >= 2 and 0.0 <= info["heldout_pairwise_accuracy"] <= 1.0
    record = next(iter(RewardLog(db).corrections()))
    scores = ReportScorer(tmp_path / "rm").score([record.corrected])
    assert len(scores) == 1 and scores[0] == scores[0]  # finite
    assert_refused(cli("reward-model", "--db", db, "--out", tmp_path / "rm"), "not empty")

    # PPO against the learned reward alone: rollouts of studies no one corrected
    root = _root
    common = ["--studies", root / "studies", "--batch-size", "2", "--steps", "2"]
    learned = cli("refine", *common, "--reward-model", tmp_path / "rm", "--out", tmp_path / "l")
    assert learned.code == 0, learned.err
    summary = json.loads((tmp_path / "l" / "refine_summary.json").read_text())
    assert summary["reward"] == "learned" and summary["corrections"] == 0
    assert summary["studies"] == STUDIES and summary["final"]["step"] == 2
    assert_refused(
        cli("refine", *common, "--reward-model", root / "studies", "--out", tmp_path / "m"),
        "not a reward model",
    )


def test_learned_reward_scores_unparseable_rollouts_below_the_batch(corrected):
    from rl.refine import learned_reward
    from rl.rewards import violation_count

    root, _, _ = corrected
    truth = Report.from_json(next((root / "studies").glob("*/report.json")).read_text())
    assert violation_count(truth) == 0

    class Scorer:
        def score(self, reports):
            return [2.0 + i for i in range(len(reports))]

    assert learned_reward(Scorer())([truth, None, truth], ["a", "b", "c"]) == [2.0, 1.0, 3.0]
