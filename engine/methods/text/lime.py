"""LIME for text (Ribeiro, Singh & Guestrin, 2016) by word removal, as the ``lime``
package's ``LimeTextExplainer`` (bag of words): the features are the text's distinct
words. Sample 0 is the text itself; sample ``i > 0`` deletes k words, k drawn uniformly
from 1..M−1 and the words at random (all samples at once, from ``default_rng(seed)``).
Samples are weighted by the exponential kernel of their cosine distance to the text
(``kernel_width`` 0.25 on the distance in 0..1 is the package's 25 on its distance
× 100; the kernel is :func:`engine.methods.lime.kernel_weights`), and a weighted Ridge
regression of the target's score on the on/off vectors gives each word its weight
(``extras["r2"]``: the surrogate's weighted R², ``intercept``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.lime import kernel_weights
from engine.methods.registry import register
from engine.methods.text.common import Scorer, TextParams, text_item, word_artifacts, word_extras
from engine.models.runtime import LoadedModel
from engine.objectives import Objective


class TextLimeParams(TextParams):
    num_samples: int = Field(default=1000, ge=2, le=100_000, description="Perturbed samples.")
    kernel_width: float = Field(
        default=0.25,
        gt=0,
        le=100,
        description="Width of the exponential kernel on cosine distance.",
    )
    alpha: float = Field(default=1.0, ge=0, le=1e6, description="Ridge regularisation.")
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the samples.")


def lime_text_codes(m: int, n: int, seed: int) -> NDArray[np.uint8]:
    """Keep-vectors (n, m): row 0 all kept; row i > 0 deletes k_i words, k_i uniform in
    1..m−1, the words uniform among the m (all rows drawn at once from ``seed``)."""
    z = np.ones((n, m), np.uint8)
    if n <= 1:
        return z
    if m == 1:
        z[1:] = 0
        return z
    rng = np.random.default_rng(seed)
    k = rng.integers(1, m, size=n - 1)
    ranks = np.argsort(rng.random((n - 1, m)), axis=1).argsort(axis=1)
    z[1:] = ranks >= k[:, None]  # the k lowest-ranked words of a row are deleted
    return z


def lime(
    model: LoadedModel,
    item: Any,
    objective: Objective,
    params: TextLimeParams,
    progress: Progress,
) -> Result:
    from sklearn.linear_model import Ridge

    text = text_item(item)
    m = text.n_features
    scorer = Scorer(model, text, objective, params.batch_size, progress)
    z = lime_text_codes(m, params.num_samples, params.seed)
    scores = scorer.scores(z.astype(bool), first_is_item=True)
    weights = kernel_weights(z, params.kernel_width)
    x = z.astype(np.float64)
    ridge: Any = Ridge(alpha=params.alpha, fit_intercept=True)
    ridge.fit(x, scores, sample_weight=weights)
    coef = np.asarray(ridge.coef_, np.float64)
    r2 = float(ridge.score(x, scores, sample_weight=weights))
    return Result(
        word_artifacts(text, coef),
        model_calls=scorer.calls,
        output=scorer.output,
        extras=word_extras(
            text,
            coef,
            params.top_k,
            r2=r2,
            intercept=float(ridge.intercept_),
            num_samples=params.num_samples,
            target_score=float(scores[0]),
        ),
    )


def cost(params: TextLimeParams, model: LoadedModel) -> int:
    return params.num_samples + 1


SPEC = register(
    MethodSpec(
        name="lime",
        params_model=TextLimeParams,
        fn=lime,
        description="LIME for text: a weighted linear surrogate over words deleted and kept.",
        kind="perturbation",
        execution="job",
        modalities=("text",),
        cost=cost,
    )
)
