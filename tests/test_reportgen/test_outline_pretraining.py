"""Masked-image pretraining of a staging reader's U-Net (`reportgen pretrain-reader`)."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_refused

from pretrain_mae.masking import MaskingOptions
from reportgen.checkpoint import read_weights
from reportgen.errors import ConfigError
from reportgen.model.field_model import load_reader
from reportgen.model.field_reader import READER_PRESETS, FieldReader, FieldReaderConfig
from reportgen.model.field_training import FieldTrainArgs, train_field_reader
from reportgen.model.outline_pretraining import (
    OutlinePretrainArgs,
    hidden_voxels,
    load_pretrained,
    masking_grid,
    pretrain_outline,
    reconstruction_loss,
)
from reportgen.synth import SynthOptions, synth_dataset

SEQUENCES = ("T2W", "DWI", "ADC", "DCE_0", "DCE_1", "DCE_2", "DCE_3")


def tiny_config() -> FieldReaderConfig:
    return FieldReaderConfig("t", SEQUENCES, {}, **READER_PRESETS["tiny"])


def test_hidden_voxels_hide_the_ratio_of_present_sequences_only():
    cfg = tiny_config()
    grid = masking_grid(cfg, (4, 4, 2))
    present = torch.ones(2, 7, dtype=torch.bool)
    present[1, 3:] = False  # no DCE
    hidden = hidden_voxels(grid, present, MaskingOptions(mask_ratio=0.6), torch.Generator())
    assert hidden.shape == (2, 7, *cfg.grid_shape)
    assert not hidden[1, 3:].any()  # nothing to reconstruct where nothing was acquired
    share = hidden[0].float().mean().item()
    assert 0.55 <= share <= 0.65


def test_lesion_aware_masking_hides_lesion_cores_more_than_random_masking():
    cfg = tiny_config()
    grid = masking_grid(cfg, (4, 4, 2))
    lesion = torch.zeros(64, *cfg.grid_shape)
    lesion[:, 8:16, 8:16, 4:8] = 1.0  # four whole patches: a lesion core
    present = torch.ones(64, 7, dtype=torch.bool)
    core = (slice(None), slice(None), slice(8, 16), slice(8, 16), slice(4, 8))
    shares = {}
    for strategy in ("random", "lesion"):
        options = MaskingOptions(strategy=strategy, mask_ratio=0.6)
        hidden = hidden_voxels(grid, present, options, torch.Generator().manual_seed(0), lesion)
        shares[strategy] = hidden[core].float().mean().item()
    assert shares["random"] == pytest.approx(0.6, abs=0.05)
    assert shares["lesion"] > shares["random"] + 0.1


def test_reconstruction_loss_counts_hidden_voxels_only():
    images = torch.rand(1, 2, 8, 8, 4)
    hidden = torch.zeros(1, 2, 8, 8, 4, dtype=torch.bool)
    hidden[:, 0, :4] = True
    perfect = torch.nn.functional.avg_pool3d(images, 2)
    assert reconstruction_loss(perfect, images, hidden).item() == pytest.approx(0.0, abs=1e-7)
    wrong_where_visible = perfect.clone()
    wrong_where_visible[:, 1] += 1.0
    wrong_where_visible[:, 0, 2:] += 1.0
    assert reconstruction_loss(wrong_where_visible, images, hidden).item() == pytest.approx(
        0.0, abs=1e-7
    )
    wrong_where_hidden = perfect.clone()
    wrong_where_hidden[:, 0, :2] += 1.0
    assert reconstruction_loss(wrong_where_hidden, images, hidden).item() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    data = root / "data"
    synth_dataset(
        data, 8, SynthOptions(protocol="low_resolution", domain="cervix", seed=31), workers=2
    )
    out = root / "lesion"
    summary = pretrain_outline(
        OutlinePretrainArgs(
            data=data, out=out, masking="lesion", patch=(4, 4, 2), config="tiny", epochs=2,
            batch_size=4,
        ),
        log=lambda _: None,
    )  # fmt: skip
    return data, out, summary


def test_pretraining_saves_the_encoder_decoder_and_the_reader_starts_from_it(pretrained, tmp_path):
    data, out, summary = pretrained
    assert len(summary["history"]) == 2 and all(h["loss"] > 0 for h in summary["history"])
    saved = read_weights(out)
    assert saved and all(k.startswith(("unet.down.", "unet.up.")) for k in saved)
    reader = FieldReader(tiny_config())
    load_pretrained(reader, out)
    state = reader.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    fresh = FieldReader(tiny_config())
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    load_pretrained(fresh, out, decoder=False)  # the encoder only
    after = fresh.state_dict()
    assert all(torch.equal(after[k], saved[k]) for k in saved if k.startswith("unet.down."))
    assert all(torch.equal(after[k], before[k]) for k in saved if k.startswith("unet.up."))
    model = tmp_path / "reader"
    train_field_reader(
        FieldTrainArgs(
            data=data,
            out=model,
            config="tiny",
            epochs=1,
            batch_size=4,
            init_from=out,
            limit=6,
            tree_iterations=20,
        ),
        log=lambda _: None,
    )
    trained = load_reader(model)
    assert trained.cfg.template == "figo_cervix_2018"


def test_a_pretrained_outline_of_another_size_is_refused(pretrained):
    _, out, _ = pretrained
    with pytest.raises(ConfigError, match="another reader size"):
        load_pretrained(FieldReader(FieldReaderConfig("t", SEQUENCES, {})), out)


def test_cli_refuses_an_unknown_masking(pretrained, cli, tmp_path):
    data, _, _ = pretrained
    result = cli("pretrain-reader", "--data", str(data), "--out", str(tmp_path / "x"),
                 "--masking", "anatomy", "--config", "tiny")  # fmt: skip
    assert_refused(result, "random or lesion")
