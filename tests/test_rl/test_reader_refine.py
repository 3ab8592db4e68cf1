"""`reportgen refine` for the readers, end to end: drafts signed through the review app's
API into a SQLite log, then refined, compared, and given a card that names their lineage."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_refused
from fastapi.testclient import TestClient
from helpers.review import PASSWORD, csrf_from, page_data, sign_in

from reportgen.data import read_manifest
from reportgen.io import load_study
from reportgen.model.field_generate import FieldReaderGenerator
from reportgen.model.field_model import load_reader
from reportgen.model.generators import bundled_model
from reportgen.model.tree_heads import TreeEnsemble
from reportgen.report import Report, build_report, load_template, validate_report
from reportgen.report.io import read_report
from reportgen.report.values import plain
from reportgen.review.app import ReviewSettings, create_app
from reportgen.review.drafts import import_drafts
from reportgen.review.forms import form_values
from reportgen.review.store import RewardLog
from reportgen.synth import SynthOptions, synth_dataset
from rl.reader_refine import (
    ReaderRefineConfig,
    Rows,
    boost_on,
    field_loss,
    shifted_size_intercept,
)

pytestmark = pytest.mark.slow

CORRECTED = 10


def _drafts_signed_through_the_app(root, model, db, corrected=lambda truth: truth) -> None:
    """Draft every study with `model`, write each draft beside its study as `generate --out`
    does, and have a clinician sign `corrected(truth)` for each through the app's API."""
    generator = FieldReaderGenerator(model)
    truths = {}
    for row in read_manifest(root / "manifest.jsonl"):
        draft = generator.draft(load_study(root / row["dir"])).report
        (root / f"{draft.study.study_id}.draft.json").write_text(draft.to_json())
        truths[draft.study.study_id] = read_report(root / row["dir"] / "report.json")
    store = RewardLog(db)
    assert import_drafts(store, root)[0] == CORRECTED
    store.accounts.add("alice", "Dr Alice", PASSWORD)
    client = TestClient(create_app(ReviewSettings(db=db, studies=root), store))
    assert sign_in(client).status_code == 303
    for draft_id in range(1, CORRECTED + 1):
        page = client.get(f"/drafts/{draft_id}")
        csrf, data = csrf_from(page.text), page_data(page.text)
        truth = truths[store.state(draft_id).draft.study.study_id]
        form = {**data["values"], **form_values(corrected(truth))}
        signed = client.post(
            f"/api/drafts/{draft_id}/sign",
            json={"version": 0, "report": form},
            headers={"X-CSRF-Token": csrf},
        )
        assert signed.status_code == 200, signed.text
    store.close()


TEMPLATE = {"cervix": "figo_cervix_2018", "ovary": "orads_mri"}


@pytest.fixture(scope="module", params=["cervix", "ovary"])
def site(request, tmp_path_factory):
    """A bundled reader of each family (staging trees; O-RADS lesion heads and trees), a
    shifted site's studies whose drafts a clinician signed through the app, and held-out
    studies. (A reader trained at test size outlines no tumour, and the app refuses its
    drafts as invalid: the bundled readers are the smallest that draft signable reports.)"""
    domain = request.param
    root = tmp_path_factory.mktemp(f"site-{domain}")
    model = bundled_model(TEMPLATE[domain])
    options = SynthOptions(domain=domain, seed=62, shift="scanner")
    synth_dataset(root / "studies", CORRECTED, options, workers=2)
    synth_dataset(root / "heldout", 3, SynthOptions(domain=domain, seed=63), workers=2)
    db = str(root / "log.db")
    _drafts_signed_through_the_app(root / "studies", model, db)
    return root, model, db


def test_refine_learns_a_reader_from_the_app_s_log_and_names_its_lineage(site, cli):
    root, model, db = site
    out = root / "refined"
    result = cli(
        "refine", "--model", str(model), "--db", db, "--studies", str(root / "studies"),
        "--out", str(out), "--heldout", str(root / "heldout"), "--rounds", "3",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads((out / "refine_summary.json").read_text())
    links, head = RewardLog(db).chain_head()
    assert summary["log_chain_head"] == {"links": links, "sha256": head}
    assert summary["corrections"] == summary["corrections_used"] == CORRECTED
    assert summary["clinicians"] == 1 and summary["method"] == "supervised"
    parent = FieldReaderGenerator(model)
    assert summary["parent_sha256"] == parent.checkpoint
    guard = summary["guard"]
    assert set(guard["refined_metrics"]) >= {"field_accuracy", "headline_accuracy"}
    assert guard["recommended"] == (not (out / "model" / "NOT_RECOMMENDED").exists())
    card = (out / "model" / "README.md").read_text()
    assert parent.checkpoint in card and head in card and "supervised" in card
    refined = load_reader(out / "model")
    assert "+supervised" in refined.cfg.version
    if refined.lesion is not None:  # O-RADS: the lesion heads moved, the outline did not
        before, after = parent.model.state_dict(), refined.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("lesion."))
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("unet."))
    assert "refined from clinicians' corrections" in card.lower()


def test_refine_refuses_a_log_whose_chain_does_not_verify(site, cli, tmp_path, monkeypatch):
    root, model, db = site
    copy = tmp_path / "log.db"
    copy.write_bytes(Path(db).read_bytes())
    monkeypatch.setenv("REPORTGEN_LOG_KEY_FILE", str(RewardLog(db).key_file))  # the copy's key
    with sqlite3.connect(copy) as connection:
        # someone with the file drops the guard and makes the clinicians look slower
        connection.execute("DROP TRIGGER corrections_no_update")
        connection.execute("UPDATE corrections SET time_spent_s = time_spent_s + 60")
    result = cli(
        "refine", "--model", str(model), "--db", str(copy), "--studies", str(root / "studies"),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert_refused(result, "altered outside the app")
    assert not (tmp_path / "out").exists()


def test_a_method_the_model_cannot_take_is_refused(site, cli, tmp_path):
    root, model, db = site
    result = cli(
        "refine", "--model", str(model), "--db", db, "--studies", str(root / "studies"),
        "--out", str(tmp_path / "out"), "--method", "ppo",
    )  # fmt: skip
    assert_refused(result, "--method ppo", "supervised, dpo or")
    missing = tmp_path / "no.db"
    result = cli(
        "refine", "--model", str(model), "--db", str(missing), "--studies", str(root / "studies"),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert_refused(result, "no reward log here")
    assert not missing.exists()  # reading a log never creates one


def _contradicting(truth: Report) -> Report:
    """The truth with every criterion negated that can be on its own (a negation that needs
    another field, such as a side, is left): corrections that contradict what is there."""
    template = load_template(truth.template.id)
    fields, findings = plain(truth.fields), [plain(f.fields) for f in truth.findings]

    def built(values: dict) -> Report:
        return build_report(
            template, values, findings, study=truth.study, provenance=truth.provenance
        )

    for name, value in sorted(plain(truth.fields).items()):
        if (
            isinstance(value, bool)
            and validate_report(built({**fields, name: not value}), template).valid
        ):
            fields[name] = not value
    return built(fields)


def test_the_guard_marks_a_reader_taught_by_a_harmful_log_not_recommended(cli, tmp_path):
    """The bundled cervix reader, corrected by a log that negates every criterion, is
    worse on held-out studies and its folder and card say so."""
    model = bundled_model("figo_cervix_2018")
    synth_dataset(
        tmp_path / "studies", CORRECTED, SynthOptions(domain="cervix", seed=64), workers=2
    )
    synth_dataset(tmp_path / "heldout", 4, SynthOptions(domain="cervix", seed=65), workers=2)
    db = str(tmp_path / "log.db")
    _drafts_signed_through_the_app(tmp_path / "studies", model, db, corrected=_contradicting)
    out = tmp_path / "refined"
    result = cli(
        "refine", "--model", str(model), "--db", db, "--studies", str(tmp_path / "studies"),
        "--out", str(out), "--heldout", str(tmp_path / "heldout"),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "NOT RECOMMENDED" in result.out
    summary = json.loads((out / "refine_summary.json").read_text())
    assert (
        summary["guard"]["recommended"] is False
        and "field_accuracy" in summary["guard"]["worse_on"]
    )
    assert (out / "model" / "NOT_RECOMMENDED").is_file()
    assert "NOT RECOMMENDED" in (out / "model" / "README.md").read_text()


def _binary_ensemble() -> TreeEnsemble:
    """One stump on feature 0 (<= 0: class 0 at raw -2; else class 1 at raw +2)."""
    tree = TreeEnsemble(1, 3, 2, 2, 2)
    tree.feature[0] = torch.tensor([0, 0, 0], dtype=torch.int32)
    tree.left[0, 0], tree.right[0, 0] = 1, 2
    tree.leaf[0] = torch.tensor([False, True, True])
    tree.value[0] = torch.tensor([0.0, -2.0, 2.0])
    tree.answers.copy_(torch.tensor([0, 1]))
    return tree


@pytest.mark.parametrize("method", ["supervised", "dpo", "grpo"])
def test_boosting_on_moves_the_corrected_reading_and_keeps_the_parent_s_trees(method):
    """Clinicians say class 1 where feature 1 is high, whatever feature 0 says: every
    method's appended trees move those studies towards class 1, the rest barely."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=generator)
    signed = ((x[:, 0] > 0) | (x[:, 1] > 1)).long()
    parent = _binary_ensemble()
    rows = Rows()
    drafted = parent(x).argmax(1)
    for i in range(len(x)):
        rows.add(x[i], int(signed[i]), int(drafted[i]), 1.0)
    cfg = ReaderRefineConfig(method=method, rounds=30, step=0.5, tree_depth=2, min_leaf=5)
    grown = boost_on(parent, rows, np.arange(3), cfg, generator)
    assert grown.shape[0] > 1 and torch.equal(grown.value[0, :3], parent.value[0])
    corrected = (x[:, 0] <= 0) & (x[:, 1] > 1)
    before = parent(x).softmax(1)[:, 1]
    after = grown(x).softmax(1)[:, 1]
    assert after[corrected].mean() > before[corrected].mean() + 0.3
    agreed = (x[:, 0] <= 0) & (x[:, 1] < 0)
    assert (after[agreed] - before[agreed]).abs().mean() < 0.15


def test_dpo_learns_nothing_from_a_confirmed_value():
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]], requires_grad=True)
    parent = logits.detach().clone()
    cfg = ReaderRefineConfig(method="dpo")
    loss = field_loss(
        "dpo", logits, parent, torch.tensor([1, 0]), torch.tensor([1, 0]), torch.ones(2), cfg,
        torch.Generator(),
    )  # fmt: skip
    assert float(loss.detach()) == 0.0


def test_the_size_bias_moves_towards_what_clinicians_measure_and_no_further():
    """Clinicians sign sizes 10% above the outline's: the intercept moves by that log ratio,
    shrunk by the parent's pseudo-corrections; the slope stays; no sizes, no change."""
    coef = torch.tensor([0.2, 0.9])
    sizes = [
        (d, 1.1 * float(torch.tensor(0.2 + 0.9 * math.log(d)).exp()), 1.0) for d in range(5, 45)
    ]
    moved = shifted_size_intercept(coef, sizes, prior=10.0)
    assert float(moved[1]) == pytest.approx(0.9)
    assert float(moved[0]) - 0.2 == pytest.approx(math.log(1.1) * 40 / 50, rel=1e-4)
    assert torch.equal(shifted_size_intercept(coef, [], prior=10.0), coef)
