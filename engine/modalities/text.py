"""The text codec: a string in, its words as the features an explanation weighs.

A caller's input reaches the codec as JSON (``{"text": "..."}``). ``decode`` finds the
words by the manifest's ``word_pattern``: a :class:`TextInput` holds the text, each word
occurrence's character span, and the distinct words (the features; with ``lowercase``,
"Good" and "good" are one). A sample keeps some features: :meth:`TextInput.keep` deletes
every occurrence of the others (their characters; the separators around stay), as the
``lime`` package's bag-of-words removal. ``to_model_input`` turns texts into what the
graph takes: a string tensor ([N, 1] or [N], as the graph's input rank), or int64 token
ids [N, max_tokens] through the manifest's vocabulary.

The length limit is the manifest's ``max_chars``, capped by the service's
``LANTERN_MAX_TEXT_CHARS`` (default 100 000).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from numpy.typing import NDArray

from api_schemas.modalities.text import TextManifest
from engine.errors import InvalidInput, InvalidManifest, InvalidModel, LanternError
from engine.modalities.base import GraphCheck, Modality, check_label_count
from engine.modalities.registry import register_modality

DEFAULT_MAX_TEXT_CHARS = 100_000


class InvalidText(InvalidInput):
    code = "invalid_text"


class EmptyText(InvalidInput):
    code = "empty_text"


class NoWords(InvalidInput):
    code = "no_words"


class TextTooLong(LanternError):
    status = 413
    code = "text_too_long"


def max_text_chars() -> int:
    """The service-wide cap on a text's length (LANTERN_MAX_TEXT_CHARS)."""
    raw = os.environ.get("LANTERN_MAX_TEXT_CHARS", "")
    try:
        value = int(raw) if raw.strip() else DEFAULT_MAX_TEXT_CHARS
    except ValueError:
        value = DEFAULT_MAX_TEXT_CHARS
    return max(value, 1)


@dataclass(frozen=True)
class TextInput:
    """A text and its words: ``spans[k]`` the (start, end) of the k-th occurrence,
    ``occurrence_feature[k]`` its feature, ``words[j]`` feature j's first spelling."""

    text: str
    spans: list[tuple[int, int]]
    occurrence_feature: list[int]
    words: list[str]
    _gaps: list[str] = field(init=False, repr=False, compare=False)
    _fills: list[str] = field(init=False, repr=False, compare=False)
    _tail: str = field(init=False, repr=False, compare=False)
    _occ: NDArray[np.intp] = field(init=False, repr=False, compare=False)

    @property
    def n_features(self) -> int:
        return len(self.words)

    @property
    def pixels(self) -> NDArray[np.object_]:
        """The text as an array of one (``model.scores(item.pixels[None])``, as for images,
        runs the model on the text itself)."""
        return np.array([self.text], dtype=object)

    def __post_init__(self) -> None:
        # keep()'s pieces: the separators around the occurrences, each occurrence's text,
        # and what takes its place when deleted ("" or, between two non-spaces, " ")
        gaps: list[str] = []
        fills: list[str] = []
        pos = 0
        text = self.text
        for start, end in self.spans:
            gaps.append(text[pos:start])
            before = text[start - 1 : start]
            after = text[end : end + 1]
            touch = before and after and not before.isspace() and not after.isspace()
            fills.append(" " if touch else "")
            pos = end
        object.__setattr__(self, "_gaps", gaps)
        object.__setattr__(self, "_fills", fills)
        object.__setattr__(self, "_tail", text[pos:])
        object.__setattr__(self, "_occ", np.asarray(self.occurrence_feature, np.intp))

    def keep(self, mask: NDArray[Any]) -> str:
        """The text with the words whose feature ``mask`` is false deleted (every
        occurrence; where the neighbours would then touch, a space stays in their place)."""
        kept = np.asarray(mask, dtype=bool)[self._occ].tolist()
        text = self.text
        parts: list[str] = []
        for (start, end), gap, fill, k in zip(
            self.spans, self._gaps, self._fills, kept, strict=True
        ):
            parts.append(gap)
            parts.append(text[start:end] if k else fill)
        parts.append(self._tail)
        return "".join(parts)

    def feature_spans(self) -> list[list[tuple[int, int]]]:
        """Each feature's occurrences (character spans)."""
        out: list[list[tuple[int, int]]] = [[] for _ in self.words]
        for span, j in zip(self.spans, self.occurrence_feature, strict=True):
            out[j].append(span)
        return out


def split_words(text: str, pattern: re.Pattern[str], lowercase: bool) -> TextInput:
    spans: list[tuple[int, int]] = []
    feature: list[int] = []
    words: list[str] = []
    index: dict[str, int] = {}
    for m in pattern.finditer(text):
        if m.end() == m.start():
            continue
        word = m.group(0)
        key = word.lower() if lowercase else word
        j = index.get(key)
        if j is None:
            j = index[key] = len(words)
            words.append(word)
        spans.append((m.start(), m.end()))
        feature.append(j)
    return TextInput(text, spans, feature, words)


class TextCodec:
    """Strings -> the model's input (see the module's docstring)."""

    modality = "text"

    def __init__(self, manifest: TextManifest, max_pixels: int = 0) -> None:
        self.manifest = manifest
        self.max_chars = min(manifest.max_chars, max_text_chars())
        self.pattern = re.compile(manifest.word_pattern)
        self.rank = 2  # the string input's rank; check_graph's session tells (see set_rank)
        self._vocab: dict[str, int] | None = None
        if manifest.input == "token_ids":
            vocab = manifest.vocabulary or []
            self._vocab = {}
            for i, tok in enumerate(vocab):
                self._vocab.setdefault(tok.lower() if manifest.lowercase else tok, i)
            self._tokens = (
                re.compile(r"\S+")
                if manifest.tokenizer == "whitespace"
                else re.compile(manifest.token_pattern)
            )

    def _text_of(self, data: bytes) -> str:
        if len(data) == 0:
            raise EmptyText('The input is empty. Send {"modality": "text", "text": "..."}.')
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise InvalidText(
                'A text input is JSON: {"modality": "text", "text": "..."}.',
            ) from None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise InvalidText(
                "The input's `text` must be a string.",
                details={"field": "text", "type": type(text).__name__},
            )
        if not text.strip():
            raise EmptyText("The text is empty. Send a text with at least one word.")
        if len(text) > self.max_chars:
            raise TextTooLong(
                f"The text has {len(text)} characters; the limit is {self.max_chars}. Shorten it.",
                details={"chars": len(text), "limit": self.max_chars},
            )
        return text

    def validate(self, data: bytes) -> None:
        self.decode(data)

    def decode(self, data: bytes) -> TextInput:
        text = self._text_of(data)
        item = split_words(text, self.pattern, self.manifest.lowercase)
        if item.n_features == 0:
            raise NoWords(
                "The text has no words by the model's word pattern "
                f"{self.manifest.word_pattern!r}. Send a text with at least one word.",
                details={"word_pattern": self.manifest.word_pattern},
            )
        return item

    def item(self, text: str) -> TextInput:
        """A text straight to an item (tests, benchmarks)."""
        return self.decode(orjson.dumps({"text": text}))

    def tokens(self, text: str) -> list[int]:
        """A text's token ids (token_ids models), at most max_tokens."""
        assert self._vocab is not None
        unk = self.manifest.unk_id
        out: list[int] = []
        for m in self._tokens.finditer(text):
            tok = m.group(0).lower() if self.manifest.lowercase else m.group(0)
            i = self._vocab.get(tok, unk)
            if i is not None:
                out.append(i)
                if len(out) == self.manifest.max_tokens:
                    break
        return out

    def to_model_input(self, batch: Any) -> NDArray[Any]:
        """Texts (a sequence or array of str, any shape) -> the graph's input tensor."""
        texts = [str(t) for t in np.asarray(batch, dtype=object).reshape(-1)]
        if self._vocab is None:
            arr = np.array(texts, dtype=object)
            return arr.reshape(-1, 1) if self.rank == 2 else arr
        ids = np.full((len(texts), self.manifest.max_tokens), self.manifest.pad_id, np.int64)
        for r, text in enumerate(texts):
            toks = self.tokens(text)
            ids[r, : len(toks)] = toks
        return ids

    def item_input(self, item: TextInput) -> NDArray[Any]:
        """One item -> the model's input at batch 1 (the text itself)."""
        return self.to_model_input([item.text])

    def baseline(self, item: TextInput, name: Any, blur_radius: float = 10.0) -> NDArray[Any]:
        """The text with every word removed."""
        return np.array([item.keep(np.zeros(item.n_features, bool))], dtype=object)

    def masked_batch(
        self,
        x0: Any,
        xb: Any,
        masks: NDArray[Any],
        out: Any,
    ) -> NDArray[Any]:
        """Model inputs of ``x0`` (a TextInput) keeping the features ``masks`` (n, M) keep."""
        item: TextInput = x0
        return self.to_model_input([item.keep(m) for m in masks])


def text_inference_dims(manifest: TextManifest) -> list[int] | None:
    if manifest.input == "token_ids":
        return [1, manifest.max_tokens]
    return None


def _pick_output(sess: ort.InferenceSession, n_labels: int) -> str:
    """The explained output: the float output of one score per label (skl2onnx's
    ``probabilities`` / ``output_probability``; else the first float output)."""
    floats = [o for o in sess.get_outputs() if o.type in ("tensor(float)", "tensor(double)")]
    if not floats:
        kinds = [f"{o.name}: {o.type}" for o in sess.get_outputs()]
        raise InvalidModel(
            "The model has no float tensor output to explain. A skl2onnx classifier needs "
            "options={id(clf): {'zipmap': False}} for a probabilities tensor.",
            details={"outputs": kinds},
        )
    for o in floats:
        if "prob" in o.name.lower():
            return str(o.name)
    return str(floats[0].name)


def check_text_graph(sess: ort.InferenceSession, manifest: TextManifest) -> GraphCheck:
    """One string input ([N, 1] or [N]) or int64 ids [N, L]; a float output with one score
    per label (run once on a test text)."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise InvalidModel(
            f"The model has {len(inputs)} inputs; text models take exactly one input tensor.",
            details={"inputs": [i.name for i in inputs]},
        )
    inp = inputs[0]
    want = "tensor(string)" if manifest.input == "string" else "tensor(int64)"
    if inp.type != want:
        raise InvalidManifest(
            f'The model input is {inp.type}, but the manifest says input "{manifest.input}" '
            f"({want}). Fix the manifest's input.",
            details={"input_type": inp.type, "input": manifest.input},
        )
    shape = list(inp.shape)
    codec = TextCodec(manifest)
    if manifest.input == "string":
        if len(shape) not in (1, 2) or (
            len(shape) == 2 and shape[1] not in (1, None) and not isinstance(shape[1], str)
        ):
            raise InvalidModel(
                f"The string input has shape {shape}; Lantern feeds [N, 1] or [N].",
                details={"input_shape": shape},
            )
        codec.rank = len(shape)
    elif len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != manifest.max_tokens):
        raise InvalidManifest(
            f"The token-id input has shape {shape}; the manifest says [N, {manifest.max_tokens}] "
            "(max_tokens).",
            details={"input_shape": shape, "max_tokens": manifest.max_tokens},
        )
    output = _pick_output(sess, len(manifest.labels))
    try:
        out = sess.run([output], {inp.name: codec.to_model_input(["a test text"])})[0]
    except Exception as e:  # ORT raises many types; any failure means "cannot run"
        raise InvalidModel(
            "The model failed on a test text. Check the manifest's input.",
            details={"reason": str(e)[:500]},
        ) from None
    out = np.asarray(out, dtype=np.float64).reshape(1, -1)
    check_label_count(int(out.shape[1]), manifest.labels)
    if manifest.scores == "probabilities" and (
        not np.all(out >= -1e-6) or abs(float(out.sum()) - 1.0) > 1e-3
    ):
        raise InvalidManifest(
            f"The output {output!r} does not hold probabilities (a row sums to "
            f'{float(out.sum()):.4g}). Set the manifest\'s scores to "logits".',
            details={"output": output, "row_sum": float(out.sum())},
        )
    return GraphCheck(inp.name, output, int(out.shape[1]))


def _codec(manifest: TextManifest, max_pixels: int) -> TextCodec:
    return TextCodec(manifest, max_pixels)


register_modality(
    Modality(
        name="text",
        codec=_codec,
        check_graph=check_text_graph,
        inference_dims=text_inference_dims,
    )
)
