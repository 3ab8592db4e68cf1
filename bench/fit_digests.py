"""Benchmark: does every training path still train the model it trained before?

Trains each model family at its tiny size on a few phantoms, with fixed seeds, and
prints a SHA-256 of each model's weights (tensor names in today's spelling, so a
checkpoint of before a rename hashes alike). Run it on two commits and compare: equal
digests mean a refactor of the training code (engine, U-Net, augmentation, losses)
reproduces every model bit for bit, which `make demo-model` and `make pelvic-models` then
do at full size. One thread, so the digests do not depend on the machine's core count.

    python bench/fit_digests.py [--out bench/results/fit_digests.json]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from bench_io import scratch_dir, write_result


def weights_digest(folder: Path) -> str:
    """SHA-256 (16 hex) over every tensor of every safetensors file under `folder`, by name."""
    from safetensors.torch import load_file

    from reportgen.model.field_reader import legacy_outline_names
    from reportgen.model.unet import legacy_unet_names

    def today(name: str) -> str:
        parts = name.split(".")
        for cut in range(len(parts)):  # a U-Net nested at any depth (detector., segmenter.)
            head, tail = ".".join(parts[:cut]), ".".join(parts[cut:])
            renamed = legacy_unet_names(tail)
            if renamed != tail:
                return f"{head}.{renamed}" if head else renamed
        return legacy_outline_names(name)

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        for name, tensor in sorted((today(k), v) for k, v in load_file(str(path)).items()):
            digest.update(name.encode())
            digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    from pretrain_mae.masking import MaskingOptions
    from reportgen.model.field_training import FieldTrainArgs, train_field_reader
    from reportgen.model.mae_training import TrainArgs, train
    from reportgen.model.outline_pretraining import OutlinePretrainArgs, pretrain_outline
    from reportgen.model.pretraining import study_dataset
    from reportgen.model.region_training import RegionTrainArgs, train_region_model
    from reportgen.model.training import ReportTrainArgs, train_report_model
    from reportgen.synth import SynthOptions, synth_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "fit_digests.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = scratch_dir("reportgen-fit-digests-")
    quiet = lambda *_: None  # noqa: E731
    breast = SynthOptions(
        protocol="low_resolution", domain="breast", seed=31, malignant_fraction=0.6
    )
    synth_dataset(root / "breast", 8, breast, workers=1)
    synth_dataset(
        root / "cervix",
        4,
        SynthOptions(protocol="low_resolution", domain="cervix", seed=4),
        workers=1,
    )
    mae = TrainArgs(out=root / "mae", config="tiny", steps=3, batch_size=2, checkpoint_every=3,
                    masking=MaskingOptions(strategy="random"), progress=False)  # fmt: skip
    train(mae, study_dataset(root / "breast", root / "cache"), log=quiet)
    train_report_model(
        ReportTrainArgs(data=root / "breast", encoder=root / "mae", out=root / "model",
                        config="tiny", steps=12, batch_size=4, detector_steps=8,
                        segmenter_steps=6, cache_dir=root / "cache-model", progress=False),
        log=quiet,
    )  # fmt: skip
    train_region_model(
        RegionTrainArgs(data=[root / "breast", root / "cervix"], out=root / "region", epochs=2),
        log=quiet,
    )
    train_field_reader(
        FieldTrainArgs(data=root / "cervix", out=root / "reader", config="tiny", epochs=2,
                       batch_size=4, tree_iterations=5),
        log=quiet,
    )  # fmt: skip
    pretrain_outline(
        OutlinePretrainArgs(data=root / "cervix", out=root / "outline", masking="lesion",
                            patch=(4, 4, 2), config="tiny", epochs=2, batch_size=4),
        log=quiet,
    )  # fmt: skip
    folders = {"mae": "mae", "report_model": "model", "body_region": "region",
               "staging_reader": "reader", "outline_pretraining": "outline"}  # fmt: skip
    write_result(args.out, {k: weights_digest(root / v) for k, v in folders.items()})


if __name__ == "__main__":
    main()
