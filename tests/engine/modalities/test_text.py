"""The text codec: words and spans, removal, the model input, graph checks, refusals."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from api_schemas.modalities.text import TextInputBody, TextManifest
from engine.errors import InvalidManifest, InvalidModel, LanternError
from engine.modalities import codec_for
from engine.modalities.text import TextCodec, check_text_graph
from engine.models.validate import validate_model
from engine.models.zoo.sentiment_tfidf import text_pipeline_onnx

TEXTS = [
    "good movie",
    "bad movie",
    "great fun film",
    "awful boring film",
    "good great",
    "bad awful",
]
LABELS = [1, 0, 1, 0, 1, 0]


def manifest(**kw: object) -> TextManifest:
    return TextManifest.model_validate(
        {"name": "t", "modality": "text", "labels": ["neg", "pos"], **kw}
    )


def body(text: object) -> bytes:
    return orjson.dumps({"text": text})


def test_words_spans_and_features() -> None:
    codec = TextCodec(manifest())
    item = codec.item("Good film, good   ACTING!")
    assert item.words == ["Good", "film", "ACTING"]
    assert item.spans == [(0, 4), (5, 9), (11, 15), (18, 24)]
    assert item.occurrence_feature == [0, 1, 0, 2]
    assert item.feature_spans() == [[(0, 4), (11, 15)], [(5, 9)], [(18, 24)]]
    # case-sensitive words are distinct features
    assert TextCodec(manifest(lowercase=False)).item("Good good").words == ["Good", "good"]


def test_keep_deletes_every_occurrence_and_keeps_separators() -> None:
    item = TextCodec(manifest()).item("Good film, good   ACTING!")
    assert item.keep(np.array([False, True, True])) == " film,    ACTING!"
    assert item.keep(np.array([True, True, True])) == "Good film, good   ACTING!"
    assert item.keep(np.zeros(3, bool)) == " ,    !"
    # neighbours that would touch keep a space between them
    item2 = TextCodec(manifest(word_pattern=r"[a-z]+|[0-9]+")).item("ab12cd")
    assert item2.words == ["ab", "12", "cd"]
    assert item2.keep(np.array([True, False, True])) == "ab cd"


def test_model_input_is_a_string_tensor() -> None:
    codec = TextCodec(manifest())
    x = codec.to_model_input(["a b", "c"])
    assert x.dtype == object and x.shape == (2, 1) and x[1, 0] == "c"
    assert codec.item_input(codec.item("hello there")).shape == (1, 1)


def test_token_ids_input() -> None:
    m = manifest(
        input="token_ids",
        vocabulary=["<pad>", "<unk>", "good", "film"],
        unk_id=1,
        max_tokens=4,
        tokenizer="whitespace",
    )
    codec = TextCodec(m)
    ids = codec.to_model_input(["Good film good film extra", "odd"])
    assert ids.dtype == np.int64
    assert ids.tolist() == [[2, 3, 2, 3], [1, 0, 0, 0]]
    with pytest.raises(ValueError, match="vocabulary"):
        manifest(input="token_ids")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "empty_text"),
        (body(""), 422, "empty_text"),
        (body("   \n"), 422, "empty_text"),
        (body(12), 422, "invalid_text"),
        (body(["a"]), 422, "invalid_text"),
        (b"not json", 422, "invalid_text"),
        (body("a" * 51), 413, "text_too_long"),
        (body("!!! ... ???"), 422, "no_words"),
    ],
)
def test_bad_input_is_a_typed_4xx(data: bytes, status: int, code: str) -> None:
    codec = TextCodec(manifest(max_chars=50))
    with pytest.raises(LanternError) as e:
        codec.validate(data)
    assert (e.value.status, e.value.code) == (status, code)


def test_service_cap_on_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANTERN_MAX_TEXT_CHARS", "5")
    codec = TextCodec(manifest(max_chars=50))
    codec.validate(body("abcde"))
    with pytest.raises(LanternError) as e:
        codec.validate(body("abcdef"))
    assert e.value.code == "text_too_long" and e.value.details["limit"] == 5


def test_input_body_refuses_a_non_string() -> None:
    TextInputBody.model_validate({"modality": "text", "text": "ok"})
    with pytest.raises(ValueError):
        TextInputBody.model_validate({"modality": "text", "text": 5})


def test_manifest_refuses_bad_patterns() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        manifest(word_pattern="(")
    with pytest.raises(ValueError, match="empty string"):
        manifest(word_pattern=r"\w*")


def test_skl2onnx_pipeline_registers_with_its_probabilities() -> None:
    data, pipe = text_pipeline_onnx(TEXTS, LABELS)
    checked = validate_model(data, manifest(), 10**8)
    assert (checked.input_name, checked.output_name, checked.num_classes) == (
        "text",
        "probabilities",
        2,
    )
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    codec = codec_for(manifest())
    out = sess.run(["probabilities"], {"text": codec.to_model_input(["good movie", "awful"])})[0]
    np.testing.assert_allclose(out, pipe.predict_proba(["good movie", "awful"]), atol=1e-5)


def test_graph_checks_refuse_disagreeing_manifests() -> None:
    data, _ = text_pipeline_onnx(TEXTS, LABELS)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with pytest.raises(InvalidManifest, match="labels"):
        check_text_graph(sess, manifest(labels=["a", "b", "c"]))
    with pytest.raises(InvalidManifest, match="token_ids"):
        check_text_graph(sess, manifest(input="token_ids", vocabulary=["a"]))
    raw, _ = text_pipeline_onnx(TEXTS, LABELS, raw_scores=True)
    raw_sess = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    with pytest.raises(InvalidManifest, match="logits"):
        check_text_graph(raw_sess, manifest())
    assert check_text_graph(raw_sess, manifest(scores="logits")).num_classes == 2


def test_graph_without_float_output_is_refused() -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    _, pipe = text_pipeline_onnx(TEXTS, LABELS)
    clf = pipe.named_steps["clf"]
    onx = convert_sklearn(
        pipe,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={id(pipe.named_steps["vec"]): {"locale": "C.UTF-8"}},  # zipmap on
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    assert clf is not None
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(InvalidModel, match="zipmap"):
        check_text_graph(sess, manifest())
