"""MAE pretraining: tokens, masking strategies, loss, exact resume, DDP replicas, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import assert_refused
from safetensors.torch import load_file

from pretrain_mae.config import MAEConfig, preset
from pretrain_mae.masking import MaskingOptions, draw_mask, lesion_weights
from pretrain_mae.model import MaskedAutoencoder3D
from pretrain_mae.patches import patchify, unpatchify
from reportgen.errors import ConfigError, InputError
from reportgen.model.detector import load_detector
from reportgen.model.mae_training import (
    TrainArgs,
    load_pretrained,
    mae_config,
    save_checkpoint,
    train,
)
from reportgen.model.pretraining import detector_prior, study_dataset
from reportgen.synth import SynthOptions, synth_dataset

CFG = preset("tiny")


def test_patchify_round_trip_and_token_order():
    x = torch.randn(2, 7, *CFG.grid_shape)
    tokens = patchify(x, CFG)
    assert tokens.shape == (2, CFG.num_tokens, CFG.patch_voxels)
    assert torch.equal(unpatchify(tokens, CFG), x)
    # token 0 of sequence 1 is the first patch of channel 1
    assert torch.equal(tokens[0, CFG.num_patches, :4], x[0, 1, 0, 0, :4])


def test_checkpoint_round_trip_with_strict_config_and_keys(tmp_path):
    cfg = preset("tiny", modality_experts=True, multiscale_layers=(1, 2))
    model = MaskedAutoencoder3D(cfg)
    save_checkpoint(tmp_path / "ckpt", model, cfg)
    assert mae_config(tmp_path / "ckpt") == cfg
    loaded = load_pretrained(tmp_path / "ckpt")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="not divisible"):
        MAEConfig(grid_shape=(30, 32, 16), patch=(8, 8, 4))
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({**config, "colour": "red"}))
    with pytest.raises(ConfigError, match="unknown MAE config keys"):
        mae_config(tmp_path / "ckpt")
    # weights of another shape: refused by name, never half-loaded
    save_checkpoint(tmp_path / "other", MaskedAutoencoder3D(preset("tiny")), preset("tiny"))
    (tmp_path / "other" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="weights do not fit"):
        load_pretrained(tmp_path / "other")
    with pytest.raises(InputError, match="not a pretraining checkpoint"):
        load_pretrained(tmp_path)


def _draw(opts, present=None, lesion=None, seed=0):
    present = torch.ones(8, 7, dtype=torch.bool) if present is None else present
    return draw_mask(
        CFG,
        present,
        opts,
        torch.Generator().manual_seed(seed),
        lesion=lesion,
        reference=torch.rand(present.shape[0], *CFG.grid_shape),
    )


def test_unavailable_tokens_are_never_seen_nor_scored():
    present = torch.ones(8, 7, dtype=torch.bool)
    present[1, 2:] = False
    for cross in ("independent", "joint", "complementary"):
        m = _draw(MaskingOptions(cross=cross), present)
        visible = torch.zeros_like(m.available).scatter_(1, m.keep, m.keep_valid)
        assert not (visible & ~m.available).any() and not (m.target & ~m.available).any()
        assert (m.keep_valid.sum(1)[1] == int(0.25 * 2 * CFG.num_patches)) and m.keep_valid.sum(1)[
            0
        ] == int(0.25 * CFG.num_tokens)


def test_sequence_dropout_keeps_at_least_one_sequence():
    present = torch.zeros(64, 7, dtype=torch.bool)
    present[:, 3] = True
    m = _draw(MaskingOptions(sequence_dropout=0.99), present)
    assert (m.available.reshape(64, 7, -1).any(-1).sum(1) >= 1).all()


def test_joint_and_complementary_across_sequences():
    joint = _draw(MaskingOptions(cross="joint"))
    vis = (
        torch.zeros_like(joint.available)
        .scatter_(1, joint.keep, joint.keep_valid)
        .reshape(8, 7, -1)
    )
    per_location = vis.sum(1)
    assert (
        (per_location == 0) | (per_location == 7)
    ).float().mean() > 0.95  # all or nothing per location
    comp = _draw(MaskingOptions(cross="complementary"))
    vis = torch.zeros_like(comp.available).scatter_(1, comp.keep, comp.keep_valid).reshape(8, 7, -1)
    assert (
        vis.sum(1).max() <= 2 and (vis.sum(1) >= 1).float().mean() > 0.9
    )  # spread over locations, one sequence each


def test_lesion_aware_masking_keeps_borders_and_masks_cores():
    lesion = torch.zeros(8, *CFG.grid_shape)
    lesion[:, 8:24, 8:24, 4:12] = 1.0  # covers whole patches: cores, with borders around
    opts = MaskingOptions(strategy="lesion")
    weights = lesion_weights(lesion, CFG, opts)
    core, border = weights == opts.keep_core, weights == opts.keep_border
    assert core.any() and border.any()
    seen_core = seen_border = 0.0
    for seed in range(20):
        m = _draw(opts, lesion=lesion, seed=seed)
        vis = (
            torch.zeros_like(m.available)
            .scatter_(1, m.keep, m.keep_valid)
            .reshape(8, 7, -1)
            .float()
            .mean(1)
        )
        seen_core += float(vis[core].mean())
        seen_border += float(vis[border].mean())
    assert seen_border > 2.0 * seen_core
    with pytest.raises(ValueError, match="lesion prior"):
        _draw(opts)


def test_a_detector_probability_is_read_as_a_segmentation():
    """A probability map is above zero everywhere; only where it reaches 0.5 is lesion,
    so a detector prior marks the same patches as the mask it approximates."""
    mask = torch.zeros(2, *CFG.grid_shape)
    mask[:, :8, :8, :8] = 1.0  # one corner patch
    probability = 0.02 + 0.9 * mask  # a detector's map: small but never zero outside
    opts = MaskingOptions(strategy="lesion")
    from_mask, from_probability = (
        lesion_weights(mask, CFG, opts),
        lesion_weights(probability, CFG, opts),
    )
    assert torch.equal(from_mask, from_probability)
    assert (from_probability == opts.keep_background).any()  # not every patch a border


def test_loss_counts_only_masked_tokens_of_present_sequences():
    torch.manual_seed(0)
    model = MaskedAutoencoder3D(CFG).eval()
    x = torch.rand(2, 7, *CFG.grid_shape)
    present = torch.ones(2, 7, dtype=torch.bool)
    present[:, 6] = False
    m = _draw(MaskingOptions(), present)
    loss, _ = model(x, m.keep, m.target, m.keep_valid)
    y = x.clone()
    y[:, 6] = torch.rand_like(y[:, 6]) * 10  # the missing sequence's pixels cannot matter
    assert torch.allclose(loss, model(y, m.keep[:2], m.target[:2], m.keep_valid[:2])[0])


def test_features_leave_out_missing_sequences_and_experts_and_multiscale_work():
    cfg = preset("tiny", modality_experts=True, multiscale_layers=(1, 2))
    model = MaskedAutoencoder3D(cfg)
    present = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 0, 0]], dtype=torch.bool)
    out = model.forward_features(torch.rand(2, 7, *cfg.grid_shape), present)
    assert out.valid.sum(1).tolist() == [7 * cfg.num_patches, 3 * cfg.num_patches]
    assert set(out.sequence_ids[1][out.valid[1]].tolist()) == {0, 3, 4}
    assert len(out.multiscale) == 2 and out.multiscale[0].shape == out.features.shape
    assert len(model.blocks[0].experts) == 3


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("mae")
    synth_dataset(
        root / "data",
        6,
        SynthOptions(protocol="low_resolution", domain="breast", seed=4, malignant_fraction=1.0),
        workers=2,
    )
    return root


def _args(studies, out, **kw):
    return TrainArgs(
        out=out,
        config="tiny",
        steps=6,
        batch_size=2,
        checkpoint_every=3,
        precision="fp32",
        masking=MaskingOptions(strategy="lesion", sequence_dropout=0.2),
        progress=False,
        **kw,
    )


def _train(studies, args):
    return train(args, study_dataset(studies / "data", studies / "cache"), log=lambda *_: None)


def test_exact_resume_and_repeatable_runs(studies):
    full = _train(studies, _args(studies, studies / "full"))
    again = _train(studies, _args(studies, studies / "again"))
    stopped = _args(studies, studies / "resumed")
    stopped.stop_at = 3
    _train(studies, stopped)
    assert (
        torch.load(studies / "resumed" / "last" / "trainer_state.pt", weights_only=True)["step"]
        == 3
    )
    assert not (studies / "resumed" / "model.safetensors").exists()  # not finished yet
    _train(studies, _args(studies, studies / "resumed", resume=True))
    a, b, c = (load_file(str(p / "model.safetensors")) for p in (full, again, studies / "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, same weights"
    assert all(torch.equal(a[k], c[k]) for k in a), "stopped and resumed equals uninterrupted"
    assert (full / "last" / "reconstruction.png").read_bytes()[:4] == b"\x89PNG"
    assert any((full / "tb").iterdir())
    summary = json.loads((full / "pretrain_summary.json").read_text())
    assert summary["steps"] == 6 and summary["replicas_agree"]


def test_two_process_ddp_replicas_agree(studies):
    """The same command under torchrun: two CPU processes (gloo) end with identical weights."""
    out = studies / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "reportgen.cli.pretrain_commands",
        "--data",
        str(studies / "data"),
        "--out",
        str(out),
        "--config",
        "tiny",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--precision",
        "fp32",
        "--checkpoint-every",
        "3",
        "--masking",
        "random",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_agree"] is True


def test_detector_trains_and_guides_lesion_masking(studies, cli):
    det = studies / "detector"
    result = cli(
        "pretrain",
        "--data",
        studies / "data",
        "--out",
        det,
        "--config",
        "tiny",
        "--train-detector",
        "--detector-steps",
        "5",
    )
    assert result.code == 0, result.err
    _, config = load_detector(det)
    assert config["in_channels"] == len(preset("tiny").sequences) and config["trained_on"] == 6
    prior = detector_prior(det, preset("tiny"))
    item = study_dataset(studies / "data", studies / "cache")(preset("tiny"))[0]
    p = prior(item["image"][None], item["present"][None])
    assert p.shape == (1, *preset("tiny").grid_shape) and 0 <= float(p.min()) <= float(p.max()) <= 1
    with pytest.raises(InputError, match="another grid"):
        detector_prior(det, preset("base"))
    out = studies / "with-detector"
    assert (
        cli(
            "pretrain",
            "--data",
            studies / "data",
            "--out",
            out,
            "--config",
            "tiny",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--detector",
            det,
        ).code
        == 0
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--masking", "checkerboard"], "unknown masking"),
        (["--cross", "sideways"], "unknown cross-sequence"),
        (["--precision", "fp8"], "--precision"),
        (["--config", "huge"], "unknown config"),
        (["--resume"], "nothing to resume"),
    ],
)
def test_pretrain_refusals(studies, cli, args, fragment):
    assert_refused(
        cli(
            "pretrain",
            "--data",
            studies / "data",
            "--out",
            studies / "refused",
            "--steps",
            "1",
            *args,
        ),
        fragment,
    )


def test_pretrain_needs_studies(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    assert_refused(
        cli(
            "pretrain",
            "--data",
            tmp_path / "empty",
            "--out",
            tmp_path / "o",
            "--config",
            "tiny",
            "--steps",
            "1",
        ),
        "no studies found",
    )
