"""Boosted trees kept as tensors predict exactly what scikit-learn predicts."""

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from reportgen.model.tree_heads import (
    TreeEnsemble,
    TreeHeads,
    constant_ensemble,
    ensemble_from_sklearn,
    regressed,
)


@pytest.mark.parametrize("classes", [2, 3])
def test_tree_ensemble_matches_predict_proba(classes):
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (x[:, 1] > 0.3).astype(int) + (classes == 3) * (x[:, 4] > 0.8).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x[:200], y[:200])
    trees = ensemble_from_sklearn(model)
    probs = trees(torch.from_numpy(x[200:])).softmax(1).numpy()
    np.testing.assert_allclose(probs, model.predict_proba(x[200:]), atol=1e-5)


def test_a_regressor_kept_as_tensors_predicts_what_scikit_learn_predicts():
    """The crop reader's size head: one raw score, read as the second logit."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 5))
    y = np.log(8 + 4 * x[:, 0] ** 2 + x[:, 3])  # log sizes
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x[:200], y[:200])
    predicted = regressed(ensemble_from_sklearn(model, None, 2), torch.from_numpy(x[200:]))
    np.testing.assert_allclose(predicted.numpy(), model.predict(x[200:]), atol=1e-5)


def test_columns_map_a_subset_back_to_the_full_vector():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(200, 10)).astype(np.float32)
    columns = np.array([7, 2])
    y = (full[:, 7] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=10).fit(full[:, columns], y)
    trees = ensemble_from_sklearn(model, columns)
    expected = model.predict_proba(full[:, columns])
    np.testing.assert_allclose(
        trees(torch.from_numpy(full)).softmax(1).numpy(), expected, atol=1e-5
    )


def test_tree_heads_reload_strictly_from_their_shapes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    model = HistGradientBoostingClassifier(max_iter=5).fit(x, (x[:, 0] > 0).astype(int))
    heads = TreeHeads({})
    heads.fields["a"] = ensemble_from_sklearn(model)
    again = TreeHeads(heads.shapes)
    again.load_state_dict(heads.state_dict(), strict=True)
    q = torch.from_numpy(x[:7])
    assert torch.equal(again(q)["a"], heads(q)["a"])
    with pytest.raises(RuntimeError):
        TreeHeads({"a": [1, 3, 2, 2, 2]}).load_state_dict(heads.state_dict(), strict=True)
    assert isinstance(again.fields["a"], TreeEnsemble)


def test_answers_never_seen_in_training_get_no_probability():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 3)).astype(np.float32)
    y = np.where(x[:, 0] > 0, 3, 1)  # answers 1 and 3 of five
    model = HistGradientBoostingClassifier(max_iter=10).fit(x, y)
    probs = ensemble_from_sklearn(model, values=5)(torch.from_numpy(x)).softmax(1)
    assert probs.shape == (150, 5)
    assert float(probs[:, [0, 2, 4]].max()) < 1e-9
    np.testing.assert_allclose(probs[:, [1, 3]].numpy(), model.predict_proba(x), atol=1e-5)
    constant = constant_ensemble(2, 4)(torch.from_numpy(x)).softmax(1)
    assert constant.argmax(1).eq(2).all()
