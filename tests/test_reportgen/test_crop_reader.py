"""The crop reader: learns a descriptor its crops show, never asked a field the kept
series cannot show, and saved and loaded through safetensors unchanged."""

from __future__ import annotations

import pytest
import torch

from reportgen.io.sequences import PROTOCOL
from reportgen.model.crop_reader import CropReaderConfig, load_crop_reader, save_crop_reader
from reportgen.model.crop_reader_training import _drop_families, field_targets, train_crop_reader
from reportgen.report import load_template

SHAPE = (12, 12, 8)


def _cfg() -> CropReaderConfig:
    return CropReaderConfig.for_template(
        load_template("birads_mri"), ("t2_signal", "kinetics_initial"), crop_shape=SHAPE, width=4
    )


def _crops(n: int, generator: torch.Generator):
    """T2 signal shows as the T2W channel's brightness at the centre against a band of
    fixed brightness (fat, as in a breast crop); kinetics are noise."""
    t2 = ["t2_hyperintense", "t2_isointense", "t2_hypointense"]
    truth = [{"t2_signal": t2[i % 3], "kinetics_initial": "initial_fast"} for i in range(n)]
    crops = 0.1 * torch.randn((n, len(PROTOCOL), *SHAPE), generator=generator)
    t2w = PROTOCOL.index("T2W")
    crops[:, t2w, :, :, :2] += 1.0
    for i in range(n):
        crops[i, t2w, 3:9, 3:9, 3:6] += (2 - i % 3) * 0.8
    return crops.half(), torch.ones((n, len(PROTOCOL)), dtype=torch.bool), truth


def test_the_reader_learns_what_its_crops_show_and_round_trips(tmp_path):
    generator = torch.Generator().manual_seed(0)
    cfg = _cfg()
    crops, present, truth = _crops(96, generator)
    model = train_crop_reader(crops, present, field_targets(truth, cfg), cfg, epochs=40, batch=16)
    test_crops, test_present, test_truth = _crops(30, generator)
    read = model.read(test_crops, test_present)
    right = [
        cfg.fields["t2_signal"][int(r["t2_signal"].argmax())] == t["t2_signal"]
        for r, t in zip(read, test_truth, strict=True)
    ]
    assert sum(right) / len(right) > 0.9
    assert all(abs(float(r["kinetics_initial"].sum()) - 1.0) < 1e-5 for r in read)
    save_crop_reader(model, tmp_path / "reader")
    again = load_crop_reader(tmp_path / "reader")
    assert again.cfg == cfg
    for a, b in zip(again.read(test_crops, test_present), read, strict=True):
        assert torch.allclose(a["t2_signal"], b["t2_signal"])


def test_a_dropped_family_is_zeroed_marked_absent_and_its_fields_unasked():
    cfg = _cfg()
    crops, present, truth = _crops(64, torch.Generator().manual_seed(1))
    targets = field_targets(truth, cfg)
    template = load_template("birads_mri")
    specs = [template.field(k) for k in cfg.fields]
    x, p, y = _drop_families(
        crops.float(), present, targets, specs, 0.5, torch.Generator().manual_seed(2)
    )
    dce = [PROTOCOL.index(f"DCE_{k}") for k in range(4)]
    no_dce = ~p[:, dce].any(1)
    assert no_dce.any() and (~no_dce).any()
    assert (x[no_dce][:, dce] == 0).all()
    kinetics = list(cfg.fields).index("kinetics_initial")
    assert (y[no_dce, kinetics] == -1).all() and (y[~no_dce, kinetics] >= 0).all()
    assert p.any(1).all()  # never every family
    t2 = list(cfg.fields).index("t2_signal")
    assert torch.equal(y[:, t2] >= 0, p[:, PROTOCOL.index("T2W")])


def test_without_dce_a_type_only_contrast_shows_is_not_asked():
    template = load_template("birads_mri")
    cfg = CropReaderConfig.for_template(template, ("type",), crop_shape=SHAPE, width=4)
    truth = [{"type": "non_mass_enhancement"}, {"type": "mass"}] * 32
    crops = torch.zeros((len(truth), len(PROTOCOL), *SHAPE))
    present = torch.ones((len(truth), len(PROTOCOL)), dtype=torch.bool)
    _, p, y = _drop_families(
        crops, present, field_targets(truth, cfg), [template.field("type")], 0.5,
        torch.Generator().manual_seed(3),
    )  # fmt: skip
    no_dce = ~p[:, PROTOCOL.index("DCE_1")]
    nme = torch.tensor([t["type"] == "non_mass_enhancement" for t in truth])
    assert (no_dce & nme).any() and (no_dce & ~nme).any()
    assert (y[no_dce & nme, 0] == -1).all()  # only enhancement shows it
    assert (y[no_dce & ~nme, 0] >= 0).all()  # a mass is seen on T2W


def test_a_crop_reader_in_the_model_folder_decides_the_descriptors_it_reads(tmp_path):
    """With `crop_reader/` in the report model's folder, each finding's descriptors are
    the ones read from its candidate's crop (here a reader made certain of one answer),
    with the reader's probability as their confidence."""
    import shutil

    from reportgen.io import load_study
    from reportgen.model.crop_reader import CROP_READER_FOLDER, CropReader
    from reportgen.model.generate import BUNDLED_MODEL, GenerateOptions
    from reportgen.model.generators import open_generator
    from reportgen.synth import SynthOptions, synth_dataset

    synth_dataset(tmp_path / "s", 1, SynthOptions(domain="breast", seed=5), workers=1)
    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, model)
    template = load_template("birads_mri")
    cfg = CropReaderConfig.for_template(template, ("type", "shape", "margin"), width=4)
    reader = CropReader(cfg)
    certain = {"type": "mass", "shape": "shape_irregular", "margin": "margin_spiculated"}
    with torch.no_grad():
        for name, head in zip(cfg.fields, reader.heads, strict=True):
            head.weight.zero_()
            head.bias.fill_(-4.0)
            head.bias[cfg.fields[name].index(certain[name])] = 4.0
    save_crop_reader(reader, model / CROP_READER_FOLDER)
    generator = open_generator(model)
    study = load_study(tmp_path / "s" / "breast-s5-00000")
    findings = generator.draft(study, GenerateOptions(explain=False)).report.findings
    assert findings
    expected = float(torch.tensor([4.0, -4.0, -4.0]).softmax(0)[0])
    for finding in findings:
        for name, value in certain.items():
            assert finding.fields[name].value == value
            assert finding.fields[name].confidence == pytest.approx(expected, abs=1e-3)


def test_train_crop_reader_from_lesion_views_end_to_end(cli, tmp_path):
    from conftest import assert_refused

    from reportgen.checkpoint import read_summary

    out = tmp_path / "reader"
    args = ["--out", out, "--cases", "3", "--heldout-cases", "3", "--epochs", "1"]
    result = cli("train-crop-reader", *args, "--width", "4", "--workers", "1")
    assert result.code == 0, result.err
    reader = load_crop_reader(out)
    assert list(reader.cfg.fields)[:3] == ["type", "shape", "margin"]
    summary = read_summary(out)
    assert summary["train_lesions"] >= 1 and summary["heldout"]["lesions"] >= 1
    assert "type" in summary["heldout"]["fields"]
    card = (out / "README.md").read_text()
    assert "not for clinical use" in card.lower() and "reportgen train-crop-reader" in card
    assert_refused(cli("train-crop-reader", "--out", tmp_path / "x", "--cases", "0"), "--cases")
