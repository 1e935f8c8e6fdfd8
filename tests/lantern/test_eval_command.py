"""`lantern eval` over a small folder, as a real process, with the synthetic model whose
decision depends only on a red object."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from api_schemas.models import ModelManifest
from engine.models.store import ModelStore
from engine.quality.synthetic import synthetic_dataset, synthetic_model


def test_eval_prints_a_table_per_method(tmp_path: Path) -> None:
    data = tmp_path / "data"
    model, manifest = synthetic_model()
    manifest["name"] = "redness"
    ModelStore(data / "models").add(
        model.SerializeToString(),
        ModelManifest.model_validate(manifest),
    )
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (img, _box) in enumerate(synthetic_dataset(2, seed=5)):
        Image.fromarray(img).save(folder / f"{i}.png")
    env = {**os.environ, "LANTERN_DATA_DIR": str(data), "LANTERN_BUILTIN_MODEL": "false"}
    out = subprocess.run(
        [sys.executable, "-m", "lantern.cli", "eval", str(folder), "--model", "redness",
         "--methods", "grad_cam,occlusion", "--param", "occlusion.window=8",
         "--param", "occlusion.stride=8", "--format", "plain"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    header = lines[0].lower()
    assert "deletion" in header and "insertion" in header and "forward" in header
    body = "\n".join(lines[1:])
    assert "grad_cam" in body and "occlusion" in body
    bad = subprocess.run(
        [sys.executable, "-m", "lantern.cli", "eval", str(tmp_path / "nope"), "--model",
         "redness"], env=env, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and "lantern eval:" in bad.stderr
