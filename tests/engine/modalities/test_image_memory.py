"""Peak memory of decoding a hostile image, measured in a fresh process.

A 16-bit grayscale PNG of 6300×6300 compresses to under 100 KB and sits under the default
pixel limit (40 Mpx). Before, decoding it added ~716 MB to the peak (float64 copies in
``to_rgb``). What decoding must hold, at least: the decoded frame (2 bytes/pixel for I;16),
the 8-bit gray it is scaled to (1) and the RGB image returned (Pillow keeps RGB in 4
bytes/pixel) — 7 bytes/pixel, 278 MB at most, less when the frame is released before the
RGB conversion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIDE = 6300
PIXELS = SIDE * SIDE

PROBE = r"""
import json, resource, sys

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

from engine.modalities.image import decode_image
data = open(sys.argv[1], "rb").read()
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current RSS
except OSError:
    pass
before = status("VmRSS")
img = decode_image(data, 40_000_000)
peak = status("VmHWM")
print(json.dumps({"added": peak - before, "size": list(img.size), "mode": img.mode}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc needed")
def test_sixteen_bit_png_peak_memory_is_bounded(tmp_path: Path) -> None:
    arr = np.zeros((SIDE, SIDE), np.uint16)
    arr[::97, ::89] = 65535
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path, format="PNG")
    assert path.stat().st_size < 200_000
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["size"] == [SIDE, SIDE] and result["mode"] == "RGB"
    bound = 7 * PIXELS  # frame (2) + gray (1) + RGB (4) bytes per pixel: 278 MB
    assert result["added"] < bound, f"decoding added {result['added'] / 1e6:.0f} MB"
