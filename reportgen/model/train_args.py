"""What each training command takes: one dataclass per fit, read by its trainer and, field
by field, by the command line (`reportgen.cli.options.command_from` builds the options
from these fields: a field with `option(...)` metadata is an option, its help written
here once). Imports nothing heavy, so `reportgen --help` stays quick."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def option(help: str = "", flag: str | None = None) -> dict[str, Any]:
    """Field metadata that makes the field a command-line option. An empty `help` takes
    the shared wording for the name (`reportgen.cli.options.SHARED_HELP`); `flag` names
    the option where its name is not the field's ("--copy/--no-copy")."""
    return {"option": help, "flag": flag}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class ArgsRecord:
    """A run's arguments as written beside the model (training_args.json)."""

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass
class ReportTrainArgs(ArgsRecord):
    data: Path = field(metadata=option("Studies with report.json (e.g. a synth dataset)."))
    encoder: Path = field(metadata=option("A `reportgen pretrain` output folder."))
    out: Path = field(metadata=option("Model directory to write."))
    config: str = field(default="base", metadata=option("tiny | base | large (decoder size)."))
    template: str | None = field(default=None, metadata=option())
    steps: int = field(default=1500, metadata=option())
    batch_size: int = field(default=16, metadata=option())
    lr: float = field(default=1e-3, metadata=option())
    weight_decay: float = 0.01
    freeze: str | None = field(default=None, metadata=option("frozen | partial | full encoder."))
    sequence_dropout: float | None = field(
        default=None, metadata=option("Chance each sequence is hidden from the decoder.")
    )
    sp_vocab_size: int = 256
    checkpoint_every: int = field(default=500, metadata=option())
    roi: bool = field(
        default=True,
        metadata=option("Lesion-centred reading: a detector plus zoomed crops of its candidates."),
    )
    evidence: bool = field(
        default=True,
        metadata=option(
            "Outline and measure each candidate (size, position, signal) for the decoder."
        ),
    )
    copy_values: bool = field(
        default=True,
        metadata=option(
            "A pointer-generator head copies the measured side, clock face and size.",
            flag="--copy/--no-copy",
        ),
    )
    detector_steps: int = field(default=400, metadata=option())
    segmenter_steps: int = field(default=600, metadata=option())
    detector_from: Path | None = field(
        default=None,
        metadata=option("Reuse the detector of this model directory (ablations)."),
    )
    seed: int = field(default=0, metadata=option())
    resume: bool = field(default=False, metadata=option("Continue from OUT/last.", "--resume"))
    cache_dir: Path | None = field(
        default=None, metadata=option("Preprocessed-study cache (e.g. the pretraining run's).")
    )
    progress: bool = True


READINGS = ("trees", "linear")
TREE_ITERATIONS = 300  # boosting rounds per criterion


@dataclass
class FieldTrainArgs(ArgsRecord):
    data: Path = field(
        metadata=option("Studies with report.json and lesion_mask (e.g. a synth dataset).")
    )
    out: Path = field(metadata=option("Model directory to write."))
    template: str | None = field(default=None, metadata=option())
    config: str = field(default="base", metadata=option("tiny | base (reader size)."))
    epochs: int = field(default=16, metadata=option())
    batch_size: int = field(default=8, metadata=option())
    lr: float = field(default=2e-3, metadata=option())
    weight_decay: float = 1e-4
    family_dropout: float = 0.2
    augment: bool = field(
        default=True,
        metadata=option(
            "Vary gain, contrast, bias, noise and slice thickness while training the outline."
        ),
    )
    reading: str = field(
        default="trees",
        metadata=option(
            "How criteria are read: trees (boosted, on the measured geometry) or linear."
        ),
    )
    small_parts: bool = field(
        default=True,
        metadata=option(
            "Weigh small outlined parts (deposits, implants, nodes) up in the outline's loss "
            "and measure the parts apart from the primary."
        ),
    )
    present_dice: bool = field(
        default=False,
        metadata=option(
            "Average the outline's Dice over the classes each batch holds only (for a "
            "class most studies lack, such as peritoneal implants).",
            flag="--present-dice/--all-class-dice",
        ),
    )
    rare_share: float = field(
        default=0.0,
        metadata=option(
            "Share of each outline epoch drawn from studies holding an outline class "
            "fewer than a fifth of them hold (O-RADS peritoneal implants); 0: each study once."
        ),
    )
    outline_parts: bool = field(
        default=True,
        metadata=option(
            "Outline what the masks label beyond tumour as classes of their own (a "
            "lesion's solid tissue, a dilated ureter); off reproduces readers trained before."
        ),
    )
    augment_reading: bool = field(
        default=False,
        metadata=option(
            "Fit the reading also on an acquisition-varied copy of each training study "
            "(outlined and measured afresh), so it learns how measures move on another scanner."
        ),
    )
    init_from: Path | None = field(
        default=None,
        metadata=option("A pretrain-reader folder: the outline's encoder starts from it."),
    )
    init_decoder: bool = field(
        default=True,
        metadata=option(
            "From --init-from, start the decoder too, or the encoder only.",
            flag="--init-decoder/--init-encoder-only",
        ),
    )
    limit: int = field(default=0, metadata=option("Train on the first N studies only (0: all)."))
    tree_iterations: int = TREE_ITERATIONS  # boosting rounds per criterion (tests use few)
    outline_from: Path | None = field(
        default=None,
        metadata=option("Reuse this reader's trained outline; refit the reading."),
    )
    val_fraction: float = 0.1
    seed: int = field(default=0, metadata=option())
    cache_dir: Path | None = field(default=None, metadata=option())
    progress: bool = True


@dataclass
class OutlinePretrainArgs(ArgsRecord):
    data: Path = field(metadata=option("Studies (their images only; masks as prior)."))
    out: Path = field(metadata=option("Folder to write (for train-reader --init-from)."))
    masking: str = field(
        default="random",
        metadata=option("random | lesion (lesion cores hidden more, borders kept)."),
    )
    mask_ratio: float = field(default=0.6, metadata=option("Share of patches hidden."))
    patch: tuple[int, int, int] = (8, 8, 4)  # voxels of the reader's grid (32 x 32 x 16 mm)
    prior_from: Path | None = field(
        default=None,
        metadata=option(
            "Lesion masking: this reader's outline is the prior (default: the truth masks)."
        ),
    )
    config: str = field(default="base", metadata=option("tiny | base (reader size)."))
    epochs: int = field(default=8, metadata=option())
    batch_size: int = field(default=8, metadata=option())
    lr: float = field(default=2e-3, metadata=option())
    weight_decay: float = 0.05
    seed: int = field(default=0, metadata=option())
    template: str | None = field(default=None, metadata=option())
    cache_dir: Path | None = field(default=None, metadata=option())


@dataclass
class RegionTrainArgs(ArgsRecord):
    data: list[Path] = field(
        metadata=option("Studies with report.json; repeat for each domain (breast, pelvis).")
    )
    out: Path = field(metadata=option("Folder to write the body-region reader to."))
    calibration: list[Path] = field(
        default_factory=list,
        metadata=option("Held-out studies that set the 'unusual study' threshold."),
    )
    epochs: int = field(default=30, metadata=option())
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = field(default=0, metadata=option())
    cache_dir: Path | None = field(default=None, metadata=option())


@dataclass
class CropReaderTrainArgs(ArgsRecord):
    out: Path = field(
        metadata=option("Folder to write the crop reader to (a report model's crop_reader/).")
    )
    cases: int = field(
        default=2000,
        metadata=option("Phantom cases whose lesion views train it (about 1.45 lesions each)."),
    )
    nme_cases: int = field(
        default=0,
        metadata=option(
            "Further cases of the same seed whose non-mass enhancement views alone are "
            "added (the rarer type read from more lesions, at a fraction of their cost; "
            "4000 was measured and not kept, docs/report_model.md)."
        ),
    )
    heldout_cases: int = field(
        default=400, metadata=option("Cases of another seed it is scored on (0: none).")
    )
    iterations: int = field(default=200, metadata=option("Boosting rounds per field."))
    protocol: str = field(default="clinical", metadata=option("Acquisition protocol of the views."))
    seed: int = field(default=0, metadata=option())
    heldout_seed: int = field(default=1, metadata=option("Seed of the scoring cases."))
    calibration_cases: int = field(
        default=1000,
        metadata=option("Cases of a third seed its confidence is calibrated on (0: none)."),
    )
    calibration_seed: int = field(default=2, metadata=option("Seed of the calibration cases."))
    centre_jitter_mm: float = field(
        default=0.0,
        metadata=option(
            "Cut each crop this far (standard deviation per axis, mm) from the lesion's "
            "centroid, as drafting cuts it where it found the lesion (0: at the centroid; "
            "1.0 was measured and not kept, docs/report_model.md)."
        ),
    )
    workers: int | None = field(default=None, metadata=option("Processes drawing the views."))


@dataclass
class GateTrainArgs(ArgsRecord):
    reader: Path = field(
        metadata=option("A crop reader folder (`train-crop-reader`); its gate is written into it.")
    )
    studies: int = field(
        default=240,
        metadata=option("Whole clinical phantom studies whose proposals train the gate."),
    )
    iterations: int = field(default=200, metadata=option("Boosting rounds."))
    threshold: float = field(
        default=0.5, metadata=option("Gate probability from which a proposal is a lesion.")
    )
    seed: int = field(default=0, metadata=option())
    workers: int | None = field(default=None, metadata=option("Processes drawing the studies."))


@dataclass
class PancreasTrainArgs(ArgsRecord):
    data: Path = field(
        metadata=option(
            "Pancreas CT studies with report.json and lesion_mask (synth --domain pancreas)."
        )
    )
    out: Path = field(metadata=option("Model directory to write."))
    coarse_epochs: int = field(
        default=8, metadata=option("Epochs of the coarse (4 mm, whole abdomen) outline.")
    )
    fine_steps: int = field(
        default=2500, metadata=option("Steps of the fine (1 x 1 x 2 mm, pancreas) outline.")
    )
    batch_size: int = field(default=2, metadata=option())
    lr: float = field(default=2e-3, metadata=option())
    weight_decay: float = 1e-4
    lesion_share: float = field(
        default=0.6,
        metadata=option("Share of fine patches centred on a lesion or a contact vessel."),
    )
    phase_dropout: float = field(
        default=0.15,
        metadata=option("Chance a training study is shown with its non-contrast phase only."),
    )
    rare_weight: float = field(
        default=3.0,
        metadata=option(
            "How much more often a study with a rare finding is drawn: distant disease for "
            "the coarse outline, a cyst for the fine one."
        ),
    )
    precision: str = field(
        default="auto",
        metadata=option(
            "auto (bf16 autocast where the CPU has AMX: twice as fast there) | bf16 | fp32."
        ),
    )
    val_fraction: float = 0.1
    limit: int = field(default=0, metadata=option("Use the first N studies only (0: all)."))
    seed: int = field(default=0, metadata=option())
    workers: int = field(default=2, metadata=option("Processes preparing studies."))
    cache_dir: Path | None = field(
        default=None, metadata=option("Prepared-study cache, reused across runs.")
    )
