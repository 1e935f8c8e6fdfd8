"""KernelSHAP over words (Lundberg & Lee, 2017): the players are the text's distinct words;
a coalition keeps its words and deletes the others (every occurrence). Coalitions and
their Shapley-kernel weights are drawn as for images (``shap.KernelExplainer``'s scheme,
:func:`engine.methods.kernel_shap.sample_coalitions`: exact when 2^M − 2 ≤ num_samples),
and the constrained weighted regression (:func:`engine.methods.kernel_shap.solve_shapley`)
makes Σφ = f(x) − f(no words) hold exactly (``extras["sum_check"]``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.kernel_shap import sample_coalitions, solve_shapley
from engine.methods.registry import register
from engine.methods.text.common import Scorer, TextParams, text_item, word_artifacts, word_extras
from engine.models.runtime import LoadedModel
from engine.objectives import Objective


class TextKernelShapParams(TextParams):
    num_samples: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Coalitions evaluated (besides the empty and the full one); capped at 2^M − 2.",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the coalitions.")


def kernel_shap(
    model: LoadedModel,
    item: Any,
    objective: Objective,
    params: TextKernelShapParams,
    progress: Progress,
) -> Result:
    text = text_item(item)
    m = text.n_features
    scorer = Scorer(model, text, objective, params.batch_size, progress)
    f_x, f_empty = scorer.reference()
    coalitions, weights = sample_coalitions(m, params.num_samples, params.seed)
    scores = scorer.scores(coalitions.astype(bool))
    phi = solve_shapley(coalitions, weights, scores, f_x, f_empty)
    exact = m <= 30 and coalitions.shape[0] == 2**m - 2
    return Result(
        word_artifacts(text, phi),
        model_calls=scorer.calls,
        output=scorer.output,
        extras=word_extras(
            text,
            phi,
            params.top_k,
            f_x=f_x,
            f_no_words=f_empty,
            target_score=f_x,
            sum_check=float(phi.sum() - (f_x - f_empty)),
            num_samples=int(coalitions.shape[0]),
            exact=bool(exact),
        ),
    )


def cost(params: TextKernelShapParams, model: LoadedModel) -> int:
    return params.num_samples + 2


SPEC = register(
    MethodSpec(
        name="kernel_shap",
        params_model=TextKernelShapParams,
        fn=kernel_shap,
        description="KernelSHAP over words: Shapley values of the words by weighted regression.",
        kind="perturbation",
        execution="job",
        modalities=("text",),
        cost=cost,
    )
)
