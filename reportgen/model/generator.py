"""What every model that drafts is, whatever its family: a `Generator`.

The breast report model (`generate.ReportGenerator`: encoder, template automaton over a
decoder) and the staging readers (`field_generate.FieldReaderGenerator`: outline,
measure, read, derive) differ in how they read a study and share everything around it:
the folder they load from, the template they fill, the checkpoint hash every report
cites, the device, how a study is prepared for them, and the one `Draft` they return.
The drafting service and the CLI know this Protocol, not the families.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from reportgen.checkpoint import weights_sha256
from reportgen.data import study_arrays
from reportgen.io.study import Study
from reportgen.report import Report, Template, load_template
from reportgen.report.calibration import Calibration

if TYPE_CHECKING:
    from reportgen.model.decoding import Drafted
    from reportgen.model.grammar import ParseState


@dataclass
class GenerateOptions:
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    constrained: bool = True
    explain: bool = True
    explain_dir: Path | None = None  # heat-map NIfTI + key-slice PNG go here


@dataclass
class Draft:
    report: Report | None  # None only for an unconstrained draft the template cannot read
    state: ParseState | None  # None for a staging reader's draft (no tokens)
    drafted: Drafted | None
    malignancy_probability: float | None
    error: str | None = None
    # Each finding's outline on the model's input grid (None where it has none) and that
    # grid's voxel -> world (RAS mm) affine: what a DICOM SEG of the draft is made of.
    outlines: list[np.ndarray | None] = field(default_factory=list)
    grid_affine: np.ndarray | None = None


class Generator(Protocol):
    """A loaded model that drafts reports of its template."""

    template: Template
    checkpoint: str  # SHA-256 of its weights, cited in every report's provenance

    @property
    def sequences(self) -> tuple[str, ...]: ...

    def draft(self, study: Study, options: GenerateOptions | None = None) -> Draft: ...


class LoadedModel:
    """What both families hold once loaded: folder, model, template, checkpoint hash and
    device, and the study prepared on the model's grid."""

    def __init__(self, model_dir: Path, model: torch.nn.Module, template_id: str, device: str):
        self.model_dir = Path(model_dir)
        self.model = model
        self.template = load_template(template_id)
        self.checkpoint = weights_sha256(self.model_dir)
        self.device = torch.device(device)
        # the folder's confidence calibration (`reportgen calibrate`), if it has one
        self.calibration = Calibration.load(self.model_dir)

    def calibrated(self, report: Report) -> Report:
        """`report` with its confidences calibrated and the check threshold recorded."""
        return self.calibration.apply(report) if self.calibration is not None else report

    def prepared(self, study: Study, grid) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The study on `grid` (a `GridConfig`): image (1, S, X, Y, Z) and present (1, S)
        on the model's device, and the arrays as prepared (affine, ...)."""
        arrays = study_arrays(study, grid, with_mask=False)
        image = torch.from_numpy(arrays["image"])[None].to(self.device)
        present = torch.from_numpy(arrays["present"])[None].to(self.device)
        return image, present, arrays
