"""One definition of each concept, held by the code's own shape: what issue 36 made
true stays true. Each test reads the source, so a new shortcut fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reportgen", "rl", "pretrain_mae", "ontology")
CHECKPOINT_MODULE = ROOT / "reportgen" / "checkpoint.py"


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_weights_are_read_and_written_only_by_the_checkpoint_module():
    """Strict keys, atomic writes and the model_type check live in one place; four
    modules once called safetensors themselves (one wrote a second file format)."""
    direct = [
        str(p.relative_to(ROOT))
        for p in _modules()
        if p != CHECKPOINT_MODULE and any(n.split(".")[0] == "safetensors" for n in _imports(p))
    ]
    assert direct == [], direct
    assert "safetensors.torch" in _imports(CHECKPOINT_MODULE)  # the scan can see an import


def test_every_fit_steps_through_the_one_training_engine():
    """One place zeroes, back-propagates, clips and steps (there were ten loops, each with
    its own AdamW set-up)."""
    engine = ROOT / "reportgen" / "model" / "engine.py"
    backward = [
        str(p.relative_to(ROOT))
        for p in _modules()
        if p != engine and ".backward()" in p.read_text(encoding="utf-8")
    ]
    adam = [
        str(p.relative_to(ROOT))
        for p in _modules()
        if p != engine and "AdamW(" in p.read_text(encoding="utf-8")
    ]
    assert backward == [] and adam == [], (backward, adam)
    assert ".backward()" in engine.read_text(encoding="utf-8")


def test_one_config_reader_one_model_card_writer_one_unet():
    """Configs are read strictly by one `from_dict`, model cards written by one function,
    and every 3D U-Net is `reportgen.model.unet.UNet3D` (there were four `from_dict`
    copies, three card writers and two U-Nets)."""
    sources = {p: p.read_text(encoding="utf-8") for p in _modules()}
    from_dict = [str(p.relative_to(ROOT)) for p, s in sources.items() if "def from_dict(" in s]
    cards = [
        str(p.relative_to(ROOT))
        for p, s in sources.items()
        if '"README.md").write_text' in s or "/ CARD).write_text" in s
    ]
    transposed = [str(p.relative_to(ROOT)) for p, s in sources.items() if "ConvTranspose3d(" in s]
    assert from_dict == ["reportgen/checkpoint.py"], from_dict
    assert cards == [], cards
    assert transposed == ["reportgen/model/unet.py"], transposed


def test_one_segmentation_loss_one_size_weighting_one_args_record():
    """Outlines train with `reportgen.model.losses` only (there were two losses and two
    small-part weightings), and training arguments are written by one `to_dict`."""
    sources = {p: p.read_text(encoding="utf-8") for p in _modules()}
    binary = [str(p.relative_to(ROOT)) for p, s in sources.items() if "binary_cross_entropy" in s]
    labelled = [
        str(p.relative_to(ROOT))
        for p, s in sources.items()
        if "ndimage.label(" in s and "/model/" in str(p) and "training" in str(p)
    ]
    to_dict = [
        str(p.relative_to(ROOT))
        for p, s in sources.items()
        if "def to_dict(self)" in s and "/model/" in str(p)
    ]
    assert binary == ["reportgen/model/losses.py"], binary
    assert labelled == [], labelled
    assert to_dict == ["reportgen/model/train_args.py"], to_dict
