"""The unconstrained baseline of a staging reader: the headline read directly, no rules.

A decoder's unconstrained baseline is the same decoder without its grammar. A staging
reader writes no tokens; what the template constrains is how the result follows from
the criteria (FIGO stage from the extent criteria, O-RADS score from the lexicon). So
this baseline reads the headline straight from the same measured outline with the same
boosted trees (`field_training.criterion_classifier`), fit on the training studies'
stated headline; the criteria are the reader's own. The draft states that headline even
where the template's rules give another (a warning the report keeps, as a clinician's
overruling would), so the difference to the model is what the rules add.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pretrain_mae.data import collate
from reportgen.model.field_training import TREE_ITERATIONS, criterion_classifier
from reportgen.report import build_report
from reportgen.report.schema import Report
from reportgen.report.values import plain


@torch.no_grad()
def library_features(model, images) -> tuple[torch.Tensor, np.ndarray]:
    """One pass over prepared studies: the reader's retrieval embeddings (unit length) and
    its measured columns (`FieldReader.measured_columns`)."""
    embeddings, measured = [], []
    for start in range(0, len(images), 16):
        batch = collate([images[i] for i in range(start, min(len(images), start + 16))])
        summary, _ = model.summary(batch["image"], batch["present"])
        embeddings.append(F.normalize(model.trunk(summary), dim=-1))
        measured.append(summary.numpy()[:, model.measured_columns()])
    return torch.cat(embeddings), np.concatenate(measured)


class DirectHeadline:
    """Headline value from the measured outline, fit on a library of reported studies
    (`measured`: their `library_features`)."""

    def __init__(
        self,
        model,
        template,
        measured: np.ndarray,
        reports: list[Report],
        seed: int = 0,
        iterations: int = TREE_ITERATIONS,
    ):
        self.model, self.template = model, template
        head = template.headline
        labels = [str(r.derived[head].value) if head in r.derived else None for r in reports]
        keep = [i for i, v in enumerate(labels) if v is not None]
        self.values = sorted({labels[i] for i in keep})
        x = measured[keep]
        y = np.array([self.values.index(labels[i]) for i in keep])
        self.classifier = (
            criterion_classifier(seed, iterations).fit(x, y) if len(self.values) > 1 else None
        )

    def predict(self, measured: np.ndarray) -> str:
        """The headline of one study from its measured columns (`library_features`)."""
        if self.classifier is None:
            return self.values[0]
        return self.values[int(self.classifier.predict(measured.reshape(1, -1))[0])]

    def report(self, draft: Report, measured: np.ndarray) -> Report:
        """The reader's own draft, its headline replaced by the directly read one."""
        return build_report(
            self.template,
            plain(draft.fields),
            [plain(f.fields) for f in draft.findings],
            study=draft.study,
            provenance=draft.provenance,
            stated={self.template.headline: self.predict(measured)},
            trust_stated=True,
            confidences=_confidences(draft.fields),
            finding_confidences=[_confidences(f.fields) for f in draft.findings],
            notice=draft.notice,
        )


def _confidences(values) -> dict[str, float]:
    return {k: v.confidence for k, v in values.items() if v.confidence is not None}
