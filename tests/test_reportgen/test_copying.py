"""The pointer-generator decoder: it copies measured values, and is GPT-2 without them."""

from __future__ import annotations

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain_mae.masking import drop_groups
from reportgen.io.sequences import family_groups
from reportgen.model.candidates import Candidate
from reportgen.model.copying import CopyingGPT2LMHeadModel, Memory
from reportgen.model.evidence import CandidateReading
from reportgen.model.generate import outlined_boxes
from reportgen.report.schema import Finding, Report, Value

VOCAB, WIDTH = 40, 16


def _decoder() -> CopyingGPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=16,
        n_embd=WIDTH,
        n_layer=1,
        n_head=2,
        add_cross_attention=True,
    )
    return CopyingGPT2LMHeadModel(cfg).eval()


def _memory(copy_ids: list[list[int]]) -> Memory:
    ids = torch.tensor(copy_ids)
    return Memory(torch.randn(*ids.shape, WIDTH), torch.ones(ids.shape, dtype=torch.bool), ids)


def test_without_copy_ids_it_is_gpt2():
    copying = _decoder()
    plain = GPT2LMHeadModel(copying.config).eval()
    plain.load_state_dict(copying.state_dict(), strict=False)
    memory = _memory([[-1, -1, -1]])
    ids = torch.tensor([[1, 5, 7]])
    kwargs = {"encoder_hidden_states": memory.tokens, "encoder_attention_mask": memory.mask.long()}
    with torch.no_grad():
        a = copying(input_ids=ids, **kwargs).logits
        b = plain(input_ids=ids, **kwargs).logits
        c = copying(input_ids=ids, **memory.decoder_kwargs()).logits  # all -1: nothing to copy
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(c, b)


def test_an_open_gate_writes_the_pointed_values():
    decoder = _decoder()
    with torch.no_grad():
        decoder.copy_gate.bias.fill_(30.0)  # always copy
        decoder.copy_query.weight.zero_()  # attention uniform over the copyable tokens
    memory = _memory([[-1, 11, 23, -1], [-1, -1, -1, -1]])
    with torch.no_grad():
        logp = decoder(input_ids=torch.tensor([[1, 4], [1, 4]]), **memory.decoder_kwargs()).logits
    probs = logp.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2))  # a distribution per step
    assert torch.allclose(probs[0, :, 11], torch.tensor(0.5)) and torch.allclose(
        probs[0, :, 23], torch.tensor(0.5)
    )
    # a study with nothing to copy keeps the language model's distribution
    plain = torch.softmax(decoder.lm_head(decoder.transformer(
        torch.tensor([[1, 4]]), encoder_hidden_states=memory.tokens[1:],
        encoder_attention_mask=memory.mask[1:].long(),
    ).last_hidden_state), -1)  # fmt: skip
    torch.testing.assert_close(probs[1], plain[0].detach())


def test_the_copy_head_learns_to_copy_an_unseen_value():
    """Trained to repeat the one copyable memory token, it writes a value it never wrote."""
    decoder = _decoder()
    decoder.train()
    opt = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        target = torch.randint(10, 30, (16,), generator=g)  # values 30+ are never targets
        ids = torch.full((16, 4), -1)
        ids[:, 2] = target
        memory = Memory(torch.randn(16, 4, WIDTH, generator=g), torch.ones(16, 4).bool(), ids)
        seq = torch.stack([torch.ones_like(target), target], 1)
        loss = decoder(input_ids=seq, labels=seq, **memory.decoder_kwargs()).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    decoder.eval()
    ids = torch.tensor([[-1, -1, 35, -1]])
    memory = Memory(torch.randn(1, 4, WIDTH), torch.ones(1, 4).bool(), ids)
    with torch.no_grad():
        out = decoder.generate(
            input_ids=torch.ones((1, 1), dtype=torch.long),
            max_new_tokens=1,
            do_sample=False,
            num_beams=2,
            pad_token_id=0,
            **memory.decoder_kwargs(),
        )
    assert out[0, -1].item() == 35


def test_memory_concatenates_and_selects_rows():
    a = Memory(torch.zeros(2, 3, WIDTH), torch.ones(2, 3).bool())
    b = _memory([[7, -1], [-1, 9]])
    both = a.cat(b)
    assert both.tokens.shape == (2, 5, WIDTH)
    assert both.copy_ids.tolist() == [[-1, -1, -1, 7, -1], [-1, -1, -1, -1, 9]]
    assert both.select(torch.tensor([1, 1, 0])).copy_ids[:, -1].tolist() == [9, 9, -1]
    assert a.cat(a).copy_ids is None


def test_whole_families_are_hidden_together():
    names = ("T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2")
    groups = family_groups(names)
    assert groups == [[0], [1, 2], [3, 4, 5]]
    present = torch.ones(3, len(names), dtype=torch.bool)
    draws = torch.tensor([[0.9, 0.9, 0.1], [0.1, 0.1, 0.1], [0.9, 0.9, 0.9]])
    kept = drop_groups(present, groups, 0.25, draws)
    assert kept[0].tolist() == [True, True, True, False, False, False]  # no DCE at all
    assert kept[1].tolist() == [True, False, False, False, False, False]  # T2W stays
    assert kept[2].all()


def _candidate(x: int, pointers: dict[str, str]) -> Candidate:
    outline = np.array([[x, 10, 10], [x + 2, 12, 11]])
    reading = CandidateReading(np.zeros(1, np.float32), pointers, np.zeros(3))
    centre = np.array([x + 1.0, 11, 10])
    return Candidate(centre, outline[0], outline[1], 8.0, 0.9, 1, outline=outline, reading=reading)


def test_a_finding_is_placed_at_the_candidate_whose_values_it_states():
    false_positive = _candidate(2, {"laterality": "left", "clock": "clock_2", "size_mm": "6"})
    lesion = _candidate(40, {"laterality": "right", "clock": "clock_8", "size_mm": "18"})
    stated = {"laterality": "right", "clock": "clock_8", "size_mm": 18}
    finding = Finding(id="f1", fields={k: Value(value=v) for k, v in stated.items()})
    report = Report.model_construct(findings=[finding])
    outlined_boxes(report, [false_positive, lesion], np.eye(4))
    assert finding.evidence.box.min_mm[0] == 39.5  # not the first candidate in line
