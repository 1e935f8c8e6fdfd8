"""The method registry: one name per modality, modules found without an import list."""

from __future__ import annotations

import pkgutil
from typing import Any

import pytest
from pydantic import BaseModel

import engine.methods as methods_package
from engine.artifacts import Result
from engine.errors import UnknownMethod
from engine.methods import registry
from engine.methods.base import MethodSpec


class _Params(BaseModel):
    pass


def _fn(model: Any, item: Any, objective: Any, params: Any, progress: Any) -> Result:
    return Result(artifacts=[])


def _spec(name: str, *modalities: str) -> MethodSpec[Any]:
    return MethodSpec(
        name=name,
        params_model=_Params,
        fn=_fn,
        description=name,
        kind="perturbation",
        execution="job",
        modalities=modalities,
    )


@pytest.fixture
def empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_loaded", True)


def test_one_name_has_a_spec_per_modality(empty: None) -> None:
    image = registry.register(_spec("lime", "image"))
    tabular = registry.register(_spec("lime", "tabular", "text"))
    assert registry.get_method("lime", "image") is image
    assert registry.get_method("lime", "tabular") is tabular
    assert registry.get_method("lime", "text") is tabular
    # no modality, or one no spec takes: the image spec (check_method then refuses it)
    assert registry.get_method("lime") is image
    assert registry.get_method("lime", "time_series") is image
    assert registry.all_methods() == [image, tabular]


def test_a_name_without_an_image_spec_answers_its_first(empty: None) -> None:
    series = registry.register(_spec("grad_cam_1d", "time_series"))
    assert registry.get_method("grad_cam_1d") is series


def test_the_same_name_and_modality_twice_is_refused(empty: None) -> None:
    registry.register(_spec("saliency", "image", "tabular"))
    with pytest.raises(ValueError, match="registered twice for 'tabular'"):
        registry.register(_spec("saliency", "tabular"))
    # nothing of the refused spec was kept
    assert registry.get_method("saliency", "tabular").modalities == ("image", "tabular")


def test_an_unknown_name_is_refused_with_the_known_ones(empty: None) -> None:
    registry.register(_spec("occlusion", "image"))
    with pytest.raises(UnknownMethod) as err:
        registry.get_method("nope")
    assert err.value.details["known"] == ["occlusion"]


def test_every_method_module_is_found_without_an_import_list() -> None:
    names = {s.name for s in registry.all_methods()}
    # top-level modules only: subpackages hold a modality's methods beside their helpers
    modules = {m.name for m in pkgutil.iter_modules(methods_package.__path__) if not m.ispkg}
    # each module named for a method registers that method
    for module in modules:
        if module in {
            "base",
            "registry",
            "backprop",
            "layer_maps",
            "cam_core",
            "perturbation",
            "segments",
            "convergence",
        }:
            continue
        assert module in names, f"engine/methods/{module}.py registers no method of its name"
    assert {"grad_cam", "lime", "feature_visualisation", "deepdream"} <= names
