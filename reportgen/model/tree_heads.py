"""Gradient-boosted trees as torch buffers: the staging criteria read from measured geometry.

A criterion such as "tumour reaches the lower third of the vagina" is a threshold on a
measured extent. A linear head over thousands of standardised features finds such
thresholds poorly (cervix development phantoms, seed 555: 0.91 on the vaginal third);
boosted trees split on them directly (0.99 on the same features; the held-out numbers
are in docs/pelvic_models.md). The trees are
fit with scikit-learn's `HistGradientBoostingClassifier` and kept as plain tensors, so
they are saved and loaded with the rest of the reader through safetensors (no pickle),
and predict with a few vectorised gathers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

ABSENT = -30.0  # logit of an answer no training study gave (probability ~1e-13)


class TreeEnsemble(nn.Module):
    """One classifier: `trees` regression trees of at most `nodes` nodes each, every tree
    adding to one class's raw score (binary: a single score, the log-odds of class 1).
    The `classes` seen in training are `answers` of the field's `values` possible ones;
    an answer never seen gets a negligible probability rather than a wrong index."""

    def __init__(self, trees: int, nodes: int, classes: int, depth: int, values: int):
        super().__init__()
        self.classes = classes
        self.depth = depth
        self.values = values
        scores = 1 if classes <= 2 else classes
        self.register_buffer("feature", torch.zeros(trees, nodes, dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(trees, nodes, dtype=torch.float64))
        self.register_buffer("left", torch.zeros(trees, nodes, dtype=torch.int32))
        self.register_buffer("right", torch.zeros(trees, nodes, dtype=torch.int32))
        self.register_buffer("leaf", torch.ones(trees, nodes, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(trees, nodes))
        self.register_buffer("score_of_tree", torch.zeros(trees, dtype=torch.int64))
        self.register_buffer("baseline", torch.zeros(scores))
        self.register_buffer("answers", torch.arange(classes))

    @property
    def shape(self) -> list[int]:
        """[trees, nodes, classes, depth, values]: rebuilds an empty ensemble of this size."""
        trees, nodes = self.feature.shape
        return [trees, nodes, self.classes, self.depth, self.values]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, F) -> logits (B, values), softmax-ready."""
        batch, trees = x.shape[0], self.feature.shape[0]
        rows = torch.arange(trees)[None].expand(batch, trees)
        node = torch.zeros(batch, trees, dtype=torch.int64)
        for _ in range(self.depth):
            feature = self.feature[rows, node].long()
            go_left = x.double().gather(1, feature) <= self.threshold[rows, node]
            step = torch.where(go_left, self.left[rows, node], self.right[rows, node]).long()
            node = torch.where(self.leaf[rows, node], node, step)
        leaf_values = self.value[rows, node].double()
        raw = torch.zeros(batch, len(self.baseline), dtype=torch.float64)
        raw.index_add_(1, self.score_of_tree, leaf_values)
        raw = (raw + self.baseline.double()).to(x.dtype)
        if self.classes == 2:
            raw = torch.cat([torch.zeros_like(raw), raw], dim=1)
        logits = torch.full((batch, self.values), ABSENT, dtype=x.dtype)
        logits[:, self.answers] = raw if self.classes > 1 else torch.zeros_like(raw)
        return logits


def constant_ensemble(answer: int, values: int) -> TreeEnsemble:
    """A field every training study answered the same way: that answer, always."""
    out = TreeEnsemble(0, 1, 1, 0, values)
    out.answers.fill_(answer)
    return out


def ensemble_from_sklearn(
    model, columns: np.ndarray | None = None, values: int | None = None
) -> TreeEnsemble:
    """A fitted `HistGradientBoostingClassifier` (integer labels: answer indices) as a
    `TreeEnsemble` over `values` answers (a `HistGradientBoostingRegressor`: two values,
    the second logit its prediction, `regressed`). `columns` maps the model's feature index to
    the column of the full feature vector it was fit on.

    Reads the fitted predictors' node records (sklearn's own prediction path); a test
    checks the probabilities against `predict_proba`, so a change there fails loudly."""
    predictors = [tree for iteration in model._predictors for tree in iteration]
    per_iteration = len(model._predictors[0])
    nodes = max(len(tree.nodes) for tree in predictors)
    depth = max(int(tree.nodes["depth"].max()) for tree in predictors) + 1
    # a regressor has no classes: its one raw score is the second of two logits
    labels = getattr(model, "classes_", None)
    answers = np.asarray([0, 1] if labels is None else labels, dtype=np.int64)
    classes = len(answers)
    out = TreeEnsemble(len(predictors), nodes, classes, depth, values or int(answers.max()) + 1)
    out.answers.copy_(torch.from_numpy(answers))
    mapping = np.arange(model.n_features_in_) if columns is None else np.asarray(columns)
    for t, tree in enumerate(predictors):
        n = len(tree.nodes)
        record = tree.nodes
        if record["is_categorical"].any():
            raise ValueError("categorical splits are not supported")
        out.feature[t, :n] = torch.from_numpy(mapping[record["feature_idx"]].astype(np.int32))
        out.threshold[t, :n] = torch.from_numpy(record["num_threshold"].astype(np.float64))
        out.left[t, :n] = torch.from_numpy(record["left"].astype(np.int32))
        out.right[t, :n] = torch.from_numpy(record["right"].astype(np.int32))
        out.leaf[t, :n] = torch.from_numpy(record["is_leaf"].astype(bool))
        out.value[t, :n] = torch.from_numpy(record["value"].astype(np.float32))
        out.score_of_tree[t] = t % per_iteration
    out.baseline.copy_(torch.from_numpy(np.ravel(model._baseline_prediction).astype(np.float32)))
    return out


def regressed(ensemble: TreeEnsemble, x: torch.Tensor) -> torch.Tensor:
    """A regressor's prediction (B,) from its ensemble (`ensemble_from_sklearn`)."""
    return ensemble(x)[:, 1]


class TreeHeads(nn.Module):
    """One `TreeEnsemble` per criterion; `shapes` (field -> `TreeEnsemble.shape`) comes
    from the reader's config, so strict loading rebuilds exactly what was saved."""

    def __init__(self, shapes: dict[str, list[int]]):
        super().__init__()
        self.fields = nn.ModuleDict({k: TreeEnsemble(*v) for k, v in shapes.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: tree(x) for k, tree in self.fields.items()}

    @property
    def shapes(self) -> dict[str, list[int]]:
        return {k: tree.shape for k, tree in self.fields.items()}
