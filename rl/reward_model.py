"""A learned reward model: scores a report so uncorrected studies still get a reward.

Trained with trl's `RewardTrainer` on (signed, draft) pairs from the reward log: the
signed report is preferred. Input is the report in the template's own tokens (fields,
values, numbers, derived results; the free-text comment is left out), so the model
judges the report alone: its internal consistency and what clinicians tend to change.
Image evidence does not enter: it cannot tell a well-formed report of the wrong study
from the right one, which is why per-study corrections remain the primary reward.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

from reportgen.errors import ConfigError, InputError
from reportgen.model.grammar import TemplateGrammar
from reportgen.model.vocab import BOS, EOS, PAD, ReportVocab
from reportgen.report import Report, load_template
from reportgen.report.correction import CorrectionRecord

MIN_PAIRS = 8


def report_tokenizer(vocab: ReportVocab) -> PreTrainedTokenizerFast:
    """A fast tokenizer over the template tokens (one word per token)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    inner = Tokenizer(WordLevel({t: i for i, t in enumerate(vocab.tokens)}, unk_token=PAD))
    inner.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=inner, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=PAD
    )


class ReportScorer:
    """A trained reward model directory -> scores for reports."""

    def __init__(self, folder: Path):
        info = json.loads((Path(folder) / "reward_model.json").read_text())
        self.template = load_template(info["template"])
        self.vocab = ReportVocab.for_template(self.template)
        self.grammar = TemplateGrammar(self.template, self.vocab)
        self.model = GPT2ForSequenceClassification.from_pretrained(
            str(folder), use_safetensors=True
        ).eval()

    def ids(self, report: Report) -> list[int]:
        without_comment = report.model_copy(update={"comment": ""})
        return self.grammar.encode(without_comment)

    @torch.no_grad()
    def score(self, reports: list[Report]) -> list[float]:
        seqs = [self.ids(r) for r in reports]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), self.vocab.pad_id)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
        return self.model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()


def preference_pairs(records: list[CorrectionRecord]) -> list[tuple[Report, Report]]:
    """(preferred = signed, rejected = draft) for every correction that changed something."""
    return [
        (record.corrected, record.draft)
        for record in records
        if record.diff.changes or record.diff.added_findings or record.diff.removed_findings
    ]


def train_reward_model(
    records: list[CorrectionRecord],
    out: Path,
    heldout_fraction: float = 0.2,
    epochs: int = 30,
    seed: int = 0,
) -> dict:
    """Train on the log's pairs (a held-out share kept aside); returns pairwise accuracies."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    pairs = preference_pairs(records)
    templates = {signed.template.id for signed, _ in pairs}
    if len(templates) > 1:
        raise ConfigError(
            f"corrections of several templates ({', '.join(sorted(templates))}); train one model per template"
        )
    if len(pairs) < MIN_PAIRS:
        raise ConfigError(
            f"{len(pairs)} corrections changed something; a reward model needs at least {MIN_PAIRS}"
        )
    if out.exists() and any(out.iterdir()):
        raise InputError(out, "exists and is not empty")
    template = load_template(templates.pop())
    vocab = ReportVocab.for_template(template)
    grammar = TemplateGrammar(template, vocab)
    random.Random(seed).shuffle(pairs)
    n_test = max(2, int(len(pairs) * heldout_fraction))
    test, train = pairs[:n_test], pairs[n_test:]

    def encode(report: Report) -> list[int]:
        return grammar.encode(report.model_copy(update={"comment": ""}))

    data = Dataset.from_list(
        [{"chosen_ids": encode(c), "rejected_ids": encode(r)} for c, r in train]
    )
    torch.manual_seed(seed)
    model = GPT2ForSequenceClassification(
        GPT2Config(
            vocab_size=len(vocab.tokens),
            n_positions=256,
            n_embd=64,
            n_layer=2,
            n_head=4,
            num_labels=1,
            pad_token_id=vocab.pad_id,
            bos_token_id=vocab.bos_id,
            eos_token_id=vocab.eos_id,
        )
    )
    tokenizer = report_tokenizer(vocab)
    args = RewardConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=8,
        num_train_epochs=epochs,
        learning_rate=3e-4,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        disable_tqdm=False,
        center_rewards_coefficient=0.01,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    (out / "reward_model.json").write_text(json.dumps({"template": template.id}) + "\n")
    scorer = ReportScorer(out)

    def accuracy(items: list[tuple[Report, Report]]) -> float:
        chosen = scorer.score([c for c, _ in items])
        rejected = scorer.score([r for _, r in items])
        return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(items)

    result = {
        "template": template.id,
        "train_pairs": len(train),
        "heldout_pairs": len(test),
        "train_pairwise_accuracy": accuracy(train),
        "heldout_pairwise_accuracy": accuracy(test),
    }
    (out / "reward_model_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
