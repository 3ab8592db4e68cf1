"""A staging reader's folder: config.json, model.safetensors, training_summary.json, README.md."""

from __future__ import annotations

from pathlib import Path

from reportgen.checkpoint import (
    load_model_folder,
    read_model_folder,
    refined_facts,
    save_model_folder,
    write_model_card,
)
from reportgen.model.field_reader import (
    READER_TYPE,
    SEGMENT_CLASSES,
    FieldReader,
    FieldReaderConfig,
)


def save_reader(model: FieldReader, folder: Path, summary: dict | None = None) -> Path:
    return save_model_folder(model, folder, READER_TYPE, summary, card=write_card)


def write_card(folder: Path) -> None:
    """The model card: what it reads, what it was trained on, that it is not for clinical use."""
    cfg, summary = read_model_folder(folder, READER_TYPE, FieldReaderConfig)
    args = summary.get("args", {})
    solid = (
        "; its outlined solid tissue measured on its own (share of the lesion, its curve, "
        "T2W and diffusion signal)"
        if cfg.solid_tissue
        else ""
    )
    lesion = (
        f"- Per lesion: each outlined component's measures (signal percentiles on every "
        f"sequence, enhancement inside and in the rim, curve of its most-enhancing part, "
        f"texture, volume, diameter{solid}) read by one small classifier per field: "
        f"{', '.join(cfg.lesion_fields)}; laterality and size are measured.\n"
        if cfg.lesion_fields
        else ""
    )
    parts = (
        ", a dilated ureter (anatomy: hydronephrosis)"
        if cfg.segment_classes > SEGMENT_CLASSES
        else ""
    )
    what = (
        "lesions, each with its solid tissue, and deposits"
        if cfg.solid_tissue
        else f"primary tumour or lesion, extension, and nodes or deposits{parts}"
    )
    reading = (
        "read by boosted trees (one per criterion, kept as tensors) on what the frozen "
        "outline measures: each class's extents in mm from the primary's centre, its "
        "volume and where it lies on a coarse grid, and the T2W anatomy."
        if cfg.tree_shapes
        else "read by linear heads on the frozen outline's classes pooled to a coarse "
        "grid, the deepest feature map in place and the T2W anatomy."
    )
    refit = (
        "; this folder's reading was refit on the outline of an earlier run of that command "
        "(`--outline-from`)"
        if args.get("outline_from") not in (None, "None")
        else ""
    )
    augmented = (
        " Trained with acquisition augmentation (per-sequence gain and gamma, a smooth "
        "bias field, noise, thick slices; left-right flips only), so another scanner's "
        "images outline alike."
        if args.get("augment")
        else ""
    )
    small = (
        " Small parts (deposits, implants, nodes) weigh as much as large ones in the "
        "outline's loss, and the parts lying apart from the primary are measured on "
        "their own."
        if cfg.small_parts
        else ""
    )
    if args.get("rare_share"):
        small += (
            f" Studies holding an outline class fewer than a fifth of them hold make "
            f"up {args['rare_share']:.0%} of each outline epoch."
        )
    flags = "" if cfg.small_parts else " --no-small-parts"
    flags += " --present-dice" if args.get("present_dice") else ""
    flags += f" --rare-share {args['rare_share']:g}" if args.get("rare_share") else ""
    flags += " --no-outline-parts" if args.get("outline_parts") is False else ""
    write_model_card(
        folder,
        f"{cfg.name} ({cfg.template})",
        [
            f"""Template: `{cfg.template}`. A staging reader, not a text decoder: the template's rules
  derive the stage or score from the criteria it reads, so the two always agree.""",
            f"""Input: {", ".join(cfg.sequences)} prepared on a {"x".join(map(str, cfg.grid_shape))} grid
  at {cfg.grid_spacing[0]:g} mm (RAS); any of DCE or DWI/ADC may be missing (trained with
  them hidden), T2W is required.""",
            f"""Outline: a 3D U-Net (widths {", ".join(map(str, cfg.widths))}) segments
  {what}.{augmented}{small}""",
            f"Criteria: {', '.join([*cfg.study_fields, *cfg.finding_fields])}, {reading}",
            *([lesion.removeprefix("- ").rstrip()] if lesion else []),
            """Size: the outline's diameter in world mm, corrected log-linearly for partial volume
  (fit on the training studies' own outlines).""",
            f"""Trained on {summary.get("studies", "?")} studies from `{args.get("data", "?")}`
  ({summary.get("held_back", "?")} held back to choose the reading epoch; held-back field
  accuracy {summary.get("best_val_field_acc", float("nan")):.3f}) in {summary.get("seconds", "?")} s
  on 2 CPU cores.""",
            f"""Reproduce: `reportgen train-reader --data DIR --out DIR --epochs {args.get("epochs", "?")}
  --seed {args.get("seed", "?")}{flags}` on `reportgen synth` phantoms (`make pelvic-models`; see
  docs/pelvic_models.md){refit}.""",
            *refined_facts(summary.get("refined")),
        ],
    )


def load_reader(folder: Path, device: str = "cpu") -> FieldReader:
    """Weights through safetensors with strict keys; a config that does not fit is an error."""
    return load_model_folder(folder, READER_TYPE, FieldReaderConfig, FieldReader, device)
