"""sentiment-tfidf: a built-in text classifier (TF-IDF + logistic regression, skl2onnx).

No labelled corpus ships inside a mainstream package, so the corpus is *generated* from a
sentiment lexicon that does: VADER's ``vader_lexicon.txt`` (package ``vaderSentiment``,
MIT licence; Hutto & Gilbert, 2014). Every sentence plants one to three lexicon words
(the 1 789 positive and 2 217 negative ones with mean valence ≥ 1.5 or ≤ −1.5,
alphabetic, at least three letters) among neutral filler words (the list below);
its label is the sign of the planted words' summed valence (ties are not drawn). The
planted words are the ground truth an explanation should find.

A seeded draw (seed 0) gives 20 000 training and 1 000 held-out sentences; the held-out
sentences are new combinations of the same vocabulary. The held-out accuracy is measured
at build and written into the description (and into ``<zoo>/sentiment-tfidf.json``).

The graph takes a string tensor [N, 1] and outputs ``label`` and ``probabilities``
(zipmap off), the output explained. Built in about a second, once per zoo directory.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from api_schemas.modalities.text import TextManifest
from api_schemas.models import ModelInfo
from engine.models.store import ModelStore
from engine.models.zoo.registry import BuiltinModel, register_builtin

NAME = "sentiment-tfidf"
LABELS = ["negative", "positive"]
SEED = 0
N_TRAIN = 20_000
N_TEST = 1000
MIN_VALENCE = 1.5
#: The tokeniser the graph uses (scikit-learn's, without the ``(?u)`` ORT cannot read).
TOKEN_PATTERN = r"\b\w+\b"
FILLER = (
    "the a this that film movie story book plot actor scene it was is and but very "
    "quite really so of in on with for to my our their its show series episode music "
    "ending character cast writer director season chapter day evening place"
).split()
_LOCK = threading.Lock()


def lexicon() -> dict[str, float]:
    """VADER's word valences (alphabetic words of at least three letters)."""
    import vaderSentiment

    path = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    out: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].isalpha() and parts[0].islower() and len(parts[0]) >= 3:
            out[parts[0]] = float(parts[1])
    return out


def corpus(n: int, seed: int) -> tuple[list[str], list[int], list[list[str]]]:
    """``n`` sentences, their labels (1 positive) and each one's planted words."""
    lex = lexicon()
    rng = np.random.default_rng(seed)
    pos = sorted(w for w, v in lex.items() if v >= MIN_VALENCE and w not in FILLER)
    neg = sorted(w for w, v in lex.items() if v <= -MIN_VALENCE and w not in FILLER)
    texts: list[str] = []
    labels: list[int] = []
    planted: list[list[str]] = []
    while len(texts) < n:
        k = int(rng.integers(1, 4))
        words = [
            str(pos[rng.integers(len(pos))] if rng.random() < 0.5 else neg[rng.integers(len(neg))])
            for _ in range(k)
        ]
        total = sum(lex[w] for w in words)
        if abs(total) < 1e-9:
            continue
        filler = [str(FILLER[i]) for i in rng.integers(len(FILLER), size=int(rng.integers(3, 9)))]
        tokens = filler + words
        order = rng.permutation(len(tokens))
        texts.append(" ".join(tokens[i] for i in order))
        labels.append(int(total > 0))
        planted.append(words)
    return texts, labels, planted


def text_pipeline_onnx(
    texts: list[str],
    labels: list[int],
    *,
    raw_scores: bool = False,
    norm: str | None = "l2",
    count: bool = False,
    c: float = 10.0,
) -> tuple[bytes, Any]:
    """A scikit-learn TfidfVectorizer (or CountVectorizer) + LogisticRegression fitted on
    ``texts`` and converted by skl2onnx (string input [N, 1]; zipmap off, so a
    ``probabilities`` tensor; ``raw_scores``: decision scores instead). Returns the ONNX
    bytes and the fitted pipeline."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    vec: Any = (
        CountVectorizer(token_pattern=TOKEN_PATTERN)
        if count
        else TfidfVectorizer(token_pattern=TOKEN_PATTERN, norm=norm)
    )
    clf = LogisticRegression(C=c, max_iter=1000)
    pipe = Pipeline([("vec", vec), ("clf", clf)]).fit(texts, labels)
    onx = convert_sklearn(
        pipe,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={
            id(clf): {"zipmap": False, "raw_scores": raw_scores},
            id(vec): {"locale": "C.UTF-8"},
        },
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onx.SerializeToString(), pipe


def build(zoo_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The .onnx in ``zoo_dir`` (built once, atomically) and its facts (accuracy)."""
    path = zoo_dir / f"{NAME}.onnx"
    facts_path = zoo_dir / f"{NAME}.json"
    with _LOCK:
        if path.exists() and facts_path.exists():
            facts: dict[str, Any] = json.loads(facts_path.read_text())
            return path, facts
        texts, labels, _ = corpus(N_TRAIN + N_TEST, SEED)
        data, pipe = text_pipeline_onnx(texts[:N_TRAIN], labels[:N_TRAIN])
        accuracy = float(np.mean(pipe.predict(texts[N_TRAIN:]) == np.asarray(labels[N_TRAIN:])))
        facts = {
            "held_out_accuracy": accuracy,
            "n_train": N_TRAIN,
            "n_test": N_TEST,
            "seed": SEED,
            "vocabulary": len(pipe.named_steps["vec"].vocabulary_),
        }
        zoo_dir.mkdir(parents=True, exist_ok=True)
        for target, payload in ((path, data), (facts_path, json.dumps(facts).encode())):
            fd, tmp = tempfile.mkstemp(dir=zoo_dir, prefix=f".{target.name}.")
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, target)
        return path, facts


def manifest(facts: dict[str, Any]) -> TextManifest:
    return TextManifest(
        name=NAME,
        modality="text",
        labels=LABELS,
        scores="probabilities",
        word_pattern=r"\w+",
        description=(
            "Sentiment (negative/positive), TF-IDF + logistic regression via skl2onnx, "
            "trained on sentences generated from the VADER lexicon (vaderSentiment, MIT): "
            f"held-out accuracy {facts['held_out_accuracy']:.3f} on {facts['n_test']} "
            "sentences."
        ),
    )


def _register(store: ModelStore, zoo_dir: Path) -> ModelInfo:
    path, facts = build(zoo_dir)
    return store.add(path.read_bytes(), manifest(facts), builtin=True)


register_builtin(
    BuiltinModel(
        name=NAME,
        modality="text",
        description="Sentiment of English sentences (TF-IDF + linear, skl2onnx).",
        register=_register,
    )
)
