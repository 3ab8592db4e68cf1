"""Measured categories the decoder copies: the tissue readout, the outline gate, the
finding cap."""

from __future__ import annotations

import numpy as np
import torch

from pretrain_mae.config import preset
from reportgen.model.candidates import Candidate
from reportgen.model.config import PRESETS, ReportModelConfig
from reportgen.model.copying import Memory
from reportgen.model.evidence import TISSUE_LAYOUT
from reportgen.model.grammar import TemplateGrammar
from reportgen.model.modeling import ReportModel
from reportgen.model.readout import TISSUE_READOUT, Readout, readout_values
from reportgen.model.readout_training import fit_readout, readout_targets
from reportgen.model.vocab import ReportVocab
from reportgen.report import load_template

FEATURE = {name: i for i, (name, _) in enumerate(TISSUE_LAYOUT)}
BPE_LATE = {"bpe_minimal": 0.08, "bpe_mild": 0.18, "bpe_moderate": 0.33, "bpe_marked": 0.6}


def _studies(n: int, seed: int, dce: bool = True) -> tuple[torch.Tensor, list[str]]:
    """Tissue features of studies whose BPE level sets the late enhancement of both
    breasts (with measurement noise), and those levels."""
    rng = np.random.default_rng(seed)
    levels = list(rng.choice(list(BPE_LATE), size=n))
    x = np.zeros((n, len(TISSUE_LAYOUT)), np.float32)
    x[:, FEATURE["has_t2"]] = 1.0
    x[:, FEATURE["fgt_fraction_right"]] = rng.uniform(0.1, 0.7, n)
    x[:, FEATURE["fgt_fraction_left"]] = x[:, FEATURE["fgt_fraction_right"]]
    if dce:
        late = np.array([BPE_LATE[v] for v in levels]) * rng.normal(1.0, 0.05, n)
        x[:, FEATURE["has_dce"]] = 1.0
        for side in ("right", "left"):
            x[:, FEATURE[f"bpe_late_{side}"]] = late * rng.normal(1.0, 0.03, n)
            x[:, FEATURE[f"bpe_early_{side}"]] = 0.6 * late
    return torch.from_numpy(x), levels


def test_the_readout_learns_the_words_from_reports_and_is_silent_without_its_sequences():
    readout = Readout(TISSUE_LAYOUT, {"bpe_level": list(BPE_LATE)}, TISSUE_READOUT)
    features, levels = _studies(300, seed=0)
    targets = torch.tensor([[list(BPE_LATE).index(v)] for v in levels])
    fit_readout(readout, features, targets, seed=0)
    unseen, truth = _studies(200, seed=1)
    predicted = readout.predict(unseen)[:, 0]
    accuracy = np.mean([list(BPE_LATE)[int(k)] == v for k, v in zip(predicted, truth, strict=True)])
    assert accuracy >= 0.95
    no_dce, _ = _studies(20, seed=2, dce=False)
    assert (readout.predict(no_dce) == -1).all()  # no BPE is read without DCE


def test_readout_targets_are_the_reports_stated_values():
    readout = Readout(TISSUE_LAYOUT, readout_values("birads_mri", TISSUE_READOUT), TISSUE_READOUT)
    assert readout.fields == ["fgt_amount", "bpe_level", "bpe_symmetry"]

    class Stated:  # a report's fields as the readout reads them
        def __init__(self, **values):
            self.fields = {k: type("V", (), {"value": v})() for k, v in values.items()}

    rows = readout_targets(
        readout, [Stated(bpe_level="bpe_mild").fields, Stated(fgt_amount="nonsense").fields, None]
    )
    assert rows[0].tolist() == [-1, readout.values["bpe_level"].index("bpe_mild"), -1]
    assert rows[1].tolist() == [-1, -1, -1] and rows[2].tolist() == [-1, -1, -1]


def _evidence_model() -> tuple[ReportModel, ReportVocab]:
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    roi = {**PRESETS["tiny"]["roi"], "evidence": "breast"}
    cfg = ReportModelConfig(
        template="birads_mri",
        encoder=preset("tiny").to_dict(),
        vocab_size=len(vocab),
        **{**PRESETS["tiny"], "roi": roi},
        copy_values=True,
        readout=True,
    )
    model = ReportModel(cfg).eval()
    model.attach_vocab(vocab)
    return model, vocab


def test_the_tissue_tokens_carry_the_read_category_as_a_copyable_token():
    model, vocab = _evidence_model()
    readout = model.tissue_readout
    features, levels = _studies(200, seed=3)
    targets = torch.full((200, len(readout.fields)), -1)
    k = readout.fields.index("bpe_level")
    targets[:, k] = torch.tensor([readout.values["bpe_level"].index(v) for v in levels])
    fit_readout(readout, features, targets, seed=0)
    start = Memory(torch.zeros(2, 1, model.cfg.n_embd), torch.ones(2, 1, dtype=torch.bool))
    study, _ = _studies(2, seed=4)
    study[1, FEATURE["has_dce"]] = 0.0  # the second study has no DCE
    memory = model.with_tissue(start, study)
    ids = memory.copy_ids
    assert memory.tokens.shape[1] == 1 + 1 + len(readout.fields)
    bpe = ids[:, 2 + k]
    expected = readout.predict(study[:1])[0, k]
    assert vocab.token(int(bpe[0])) == f"<v:{readout.values['bpe_level'][int(expected)]}>"
    assert int(bpe[1]) == -1 and not bool(memory.mask[1, 2 + k])  # no DCE: nothing to copy
    fgt = ids[:, 2 + readout.fields.index("fgt_amount")]
    assert (fgt >= 0).all()  # T2W was acquired in both: FGT amount is read


class _Segmenter(torch.nn.Module):
    """Stands in for the segmenter: each window's centre ball at a chosen probability."""

    def __init__(self, probabilities: list[float]):
        super().__init__()
        self.probabilities = probabilities

    def forward(self, crops, present):
        shape = crops.shape[2:]
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
        ball = np.linalg.norm(grid - np.array(shape) // 2, axis=-1) <= 2
        out = torch.full((len(crops), *shape), -10.0)
        for i, p in enumerate(self.probabilities):
            out[i][torch.from_numpy(ball)] = float(np.log(p / (1 - p)))
        return out


def test_outlines_the_segmenter_is_unsure_of_are_not_candidates():
    model, _ = _evidence_model()
    model.segmenter = _Segmenter([0.6, 0.95])
    shape, _ = model.cfg.input_grid()
    image = torch.zeros(len(model.encoder_cfg.sequences), *shape)
    present = torch.ones(len(model.encoder_cfg.sequences), dtype=torch.bool)

    def proposal(centre):
        c = np.array(centre, dtype=float)
        return Candidate(c, c.astype(int), c.astype(int), 64.0, 0.9, 1)

    proposals = [proposal((4, 4, 4)), proposal((10, 10, 6))]
    kept, _ = model.outline_candidates(image, present, proposals)
    assert model.cfg.roi["min_outline_score"] == 0.8
    assert len(kept) == 1 and abs(kept[0].peak - 0.95) < 1e-3  # the unsure one is gone


def test_a_capped_grammar_writes_no_more_findings_than_it_can_place():
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab)
    finding, end = vocab.id("<finding>"), vocab.id("<findings_end>")

    def options_after(g, findings: int) -> frozenset[int]:
        prefix: list[int] = []
        written = 0
        while True:
            allowed = g.allowed(prefix)
            if finding in allowed or end in allowed:
                if written == findings:
                    return allowed
                prefix.append(finding)
                written += 1
                continue
            prefix.append(min(allowed))

    assert finding in options_after(grammar, 1)
    assert finding not in options_after(grammar.at_most(1), 1)
    assert options_after(grammar.at_most(0), 0) == {end}
    # with a gate that decided the lesions: exactly one finding each
    exactly = grammar.at_most(2).at_least(2)
    assert options_after(exactly, 0) == {finding} and options_after(exactly, 1) == {finding}
    assert options_after(exactly, 2) == {end}
    assert options_after(grammar.at_most(1).at_least(3), 1) == {end}  # the cap wins


def test_the_decoder_trains_on_readouts_fit_without_the_study():
    """On features that say nothing of the type, a readout fit on every study still reads
    most of its own training rows right (memorised); read out of fold, it is at chance,
    which is what the decoder must learn to expect of it on new studies."""
    from reportgen.model.evidence import CANDIDATE_FEATURES
    from reportgen.model.roi_training import CachedRegions, CrossFittedReadouts, fit_readouts

    model, _ = _evidence_model()
    template = load_template("birads_mri")
    n, k = 60, 2
    rng = np.random.default_rng(0)
    measured = torch.from_numpy(rng.normal(size=(n, k, CANDIDATE_FEATURES)).astype(np.float32))
    tissue, _ = _studies(n, seed=5)

    class Finding:
        def __init__(self, kind):
            self.fields = {"type": type("V", (), {"value": kind})()}

    class Study:
        def __init__(self, kinds):
            self.fields = {}
            self.findings = [Finding(t) for t in kinds]

    kinds = list(template.field("type").values)
    truth = [[str(rng.choice(kinds)) for _ in range(k)] for _ in range(n)]
    reports = [Study(t) for t in truth]
    regions = CachedRegions(
        stem=[],
        stem_valid=[],
        geometry=torch.zeros(n, k, 8),
        valid=torch.ones(n, k, dtype=torch.bool),
        matched=[[1, 2] for _ in range(n)],
        measured=measured,
        tissue=tissue,
    )
    fit_readouts(model, regions, reports, seed=0, steps=300)
    readout = model.candidate_readout
    t = readout.fields.index("type")

    def accuracy(read: torch.Tensor) -> float:
        names = readout.values["type"]
        return float(
            np.mean([names[int(read[i, j, t])] == truth[i][j] for i in range(n) for j in range(k)])
        )

    in_sample = accuracy(readout.predict(measured))
    folds = CrossFittedReadouts(model, regions, reports, seed=0, folds=3, steps=300)
    out_of_fold = accuracy(folds.read(list(range(n)), measured, tissue)[0])
    assert in_sample > 0.8
    assert out_of_fold < 0.5


def test_the_size_readout_corrects_the_outline_diameter_on_unseen_lesions():
    """Outlines whose measured diameter is off by partial volume (small ones large, large
    ones small, more so when flat): fit on stated sizes, the corrected diameter is closer
    on lesions it was not fit on; unfit, it is the measured diameter itself."""
    from reportgen.model.evidence import CANDIDATE_FEATURES, CANDIDATE_LAYOUT
    from reportgen.model.readout import SizeReadout
    from reportgen.model.readout_training import fit_size_readout

    index = {name: i for i, (name, _) in enumerate(CANDIDATE_LAYOUT)}

    def lesions(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        true = rng.uniform(5, 40, n)
        flatness = rng.uniform(0.4, 1.0, n)
        measured = 4.0 + 0.75 * true * (0.8 + 0.2 * flatness) + rng.normal(0, 0.3, n)
        x = np.zeros((n, CANDIDATE_FEATURES), np.float32)
        x[:, index["diameter_cm"]] = measured / 10.0
        x[:, index["flatness"]] = flatness
        return torch.from_numpy(x), torch.from_numpy(true.astype(np.float32))

    readout = SizeReadout(CANDIDATE_LAYOUT)
    features, sizes = lesions(300, seed=0)
    unseen, truth = lesions(200, seed=1)
    assert torch.allclose(readout.predict(unseen), unseen[:, index["diameter_cm"]] * 10.0)
    before = float((readout.predict(unseen) - truth).abs().mean())
    sizes[:10] = float("nan")  # a finding without a stated size is skipped
    fit_size_readout(readout, features, sizes, seed=0)
    after = float((readout.predict(unseen) - truth).abs().mean())
    assert before > 3.0 and after < 1.5
    # a refit with nothing stated (a cross-fitting fold) does not keep the earlier fit
    fit_size_readout(readout, features, torch.full_like(sizes, float("nan")), seed=0)
    assert torch.allclose(readout.predict(unseen), unseen[:, index["diameter_cm"]] * 10.0)


def test_sizes_point_to_the_nearest_value_on_the_templates_grid():
    model, vocab = _evidence_model()
    ids = model.size_token_ids(torch.tensor([2.2, 17.6, 500.0]))
    assert [vocab.token(int(i)) for i in ids] == ["<n:2>", "<n:18>", "<n:150>"]
    assert model.size_value(17.4) == "17"


def test_a_finding_states_the_size_measured_at_the_side_and_clock_face_it_states():
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    measured = [
        {"laterality": "right", "clock": "clock_7", "size_mm": "23"},
        {"laterality": "left", "clock": "clock_2", "size_mm": "9"},
    ]
    grammar = TemplateGrammar(template, vocab).measured_by(measured)
    finding = vocab.id("<finding>")

    def walk(choices: dict[str, str]) -> dict[str, frozenset[int]]:
        """Options offered at each finding field, choosing `choices` (else the first)."""
        prefix: list[int] = []
        while finding not in grammar.allowed(prefix):
            prefix.append(min(grammar.allowed(prefix)))
        prefix.append(finding)
        offered: dict[str, frozenset[int]] = {}
        field = None
        while len(offered) < 5:
            allowed = grammar.allowed(prefix)
            token = vocab.token(min(allowed))
            if token.startswith("<f:"):
                field = token[3:-1]
                prefix.append(min(allowed))
                continue
            offered[field] = allowed
            pick = choices.get(field)
            prefix.append(vocab.id(f"<v:{pick}>") if pick else min(allowed))
        return offered

    def ids(*tokens: str) -> frozenset[int]:
        return frozenset(vocab.id(t) for t in tokens)

    right = walk({"type": "mass", "laterality": "right", "clock": "clock_7"})
    assert right["laterality"] == ids("<v:right>", "<v:left>")
    assert right["clock"] == ids("<v:clock_7>")
    assert right["size_mm"] == ids("<n:23>")
    left = walk({"type": "mass", "laterality": "left", "clock": "clock_2"})
    assert left["size_mm"] == ids("<n:9>")
    unrestricted = TemplateGrammar(template, vocab)
    assert len(unrestricted.allowed([])) >= 1 and unrestricted.measured == ()


def test_two_findings_never_state_one_candidates_measurement():
    """A forced prostate study drafted two findings with one candidate's side, clock face
    and size; the second finding's box then came from the other candidate."""
    template = load_template("birads_mri")
    vocab = ReportVocab.for_template(template)
    measured = [
        {"laterality": "left", "clock": "clock_5", "size_mm": "83"},
        {"laterality": "right", "clock": "clock_7", "size_mm": "12"},
    ]
    grammar = TemplateGrammar(template, vocab).measured_by(measured).at_most(2)
    finding, mass = vocab.id("<finding>"), vocab.id("<v:mass>")
    picks = {
        vocab.id(f"<f:{k}>"): vocab.id(f"<v:{measured[0][k]}>") for k in ("laterality", "clock")
    }
    picks[vocab.id("<f:size_mm>")] = vocab.id("<n:83>")
    prefix: list[int] = []
    offered_sides: list[frozenset[int]] = []
    while len(offered_sides) < 2:
        allowed = grammar.allowed(prefix)
        if finding in allowed and prefix.count(finding) < 2:
            prefix.append(finding)
            continue
        field = prefix[-1] if prefix else None
        if field == vocab.id("<f:laterality>"):
            offered_sides.append(allowed)
        choice = picks.get(field) if field in picks and picks.get(field) in allowed else None
        if choice is None:
            choice = mass if mass in allowed else min(allowed)
        prefix.append(choice)
    assert vocab.id("<v:left>") in offered_sides[0]
    assert offered_sides[1] == frozenset({vocab.id("<v:right>")})
    state = grammar.parse(prefix)
    assert state.findings[0]["laterality"] == "left"
