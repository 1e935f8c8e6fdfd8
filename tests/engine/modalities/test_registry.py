"""Modalities by name: a new modality is a module that registers itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.errors import UnsupportedModality
from engine.modalities import registry
from engine.modalities.base import GraphCheck, Modality


class _Codec:
    modality = "toy"

    def __init__(self, manifest: Any, max_pixels: int) -> None:
        self.manifest = manifest

    def validate(self, data: bytes) -> None:
        pass

    def decode(self, data: bytes) -> Any:
        return np.frombuffer(data, np.uint8).astype(np.float32)

    def to_model_input(self, batch: Any) -> Any:
        return batch

    def baseline(self, item: Any, name: Any, blur_radius: float = 10.0) -> Any:
        return np.zeros_like(item)

    def masked_batch(self, x0: Any, xb: Any, masks: Any, out: Any) -> Any:
        return np.where(masks, x0, xb)


def _check(session: Any, manifest: Any) -> GraphCheck:
    return GraphCheck("x", "y", 2)


class _Manifest:
    modality = "toy"


def test_a_registered_modality_builds_its_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_MODALITIES", dict(registry._MODALITIES))
    registry._load()
    registry.register_modality(Modality("toy", _Codec, _check, lambda m: None))
    codec = registry.codec_for(_Manifest())
    assert isinstance(codec, _Codec)
    assert codec.decode(b"\x01\x02").tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_modality(Modality("toy", _Codec, _check, lambda m: None))


def test_every_module_of_the_package_registers_on_first_use() -> None:
    assert registry.modality("image").name == "image"


def test_an_unknown_modality_is_a_typed_refusal() -> None:
    with pytest.raises(UnsupportedModality) as err:
        registry.modality("video")
    assert "image" in err.value.details["known"]
