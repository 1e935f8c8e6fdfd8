"""``lantern`` subcommands that talk to a running service through :mod:`lantern_client`.

models add|list|rm, explain, jobs show|cancel. Exit status: 0 on success, 1 when the API
answers an error or cannot be reached, 2 for usage errors (argparse).

The client (httpx, numpy, PIL) is imported only when one of these subcommands runs, so that
``lantern serve`` and ``lantern worker`` do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from api_schemas.models import AnyManifest, ImageManifest

if TYPE_CHECKING:
    from lantern_client import LanternClient, ResultFormat

DEFAULT_URL = "http://localhost:8000"
COLORMAPS = ("jet", "viridis", "inferno", "coolwarm", "gray")

Handler = Callable[["LanternClient", argparse.Namespace], int]


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """--url and --api-key; on subcommands with SUPPRESS so that either position works."""
    url_default: Any = argparse.SUPPRESS if suppress else os.environ.get("LANTERN_URL", DEFAULT_URL)
    key_default: Any = argparse.SUPPRESS if suppress else os.environ.get("LANTERN_API_KEY")
    parser.add_argument(
        "--url",
        default=url_default,
        help="Lantern's base URL (default: $LANTERN_URL or http://localhost:8000).",
    )
    parser.add_argument(
        "--api-key",
        default=key_default,
        help="API key, sent as 'Authorization: Bearer' (default: $LANTERN_API_KEY).",
    )


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v``: the value as JSON when it parses (16, true, [0,0,0], "x"), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def parse_target(text: str) -> int | str:
    """A class index when it is an integer, else a label (or ``top1``)."""
    try:
        return int(text)
    except ValueError:
        return text


class ProgressBar:
    """A one-line text progress bar, redrawn in place on a stream (stderr)."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.drawn = False

    def __call__(self, value: float, state: str) -> None:
        filled = round(max(0.0, min(1.0, value)) * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {value:6.1%} {state:<10}")
        self.stream.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


# -- handlers ---------------------------------------------------------------------------


def _input_of(manifest: AnyManifest) -> str:
    """What a model takes, in a few words: ``224x224 NCHW`` for images, else its modality."""
    if isinstance(manifest, ImageManifest):
        h, w = manifest.input_size
        return f"{h}x{w} {manifest.layout}"
    return manifest.modality


def _models_add(client: LanternClient, args: argparse.Namespace) -> int:
    manifest = Path(args.manifest)
    info = client.upload_model(Path(args.file), manifest if manifest.exists() else args.manifest)
    print(
        f"registered {info.name} version {info.version[:12]} "
        f"({len(info.manifest.labels)} labels, input {_input_of(info.manifest)})"
    )
    return 0


def _models_list(client: LanternClient, args: argparse.Namespace) -> int:
    models = client.list_models()
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
        return 0
    rows = [("NAME", "VERSION", "INPUT", "LABELS", "SIZE", "BUILTIN")]
    for m in models:
        rows.append(
            (
                m.name,
                m.version[:12],
                _input_of(m.manifest),
                str(len(m.manifest.labels)),
                _human_bytes(m.size_bytes),
                "yes" if m.builtin else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
    return 0


def _models_rm(client: LanternClient, args: argparse.Namespace) -> int:
    client.delete_model(args.name)
    print(f"deleted {args.name}")
    return 0


def parse_objective(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(obj, dict) or "kind" not in obj:
        raise argparse.ArgumentTypeError('an objective is a JSON object with a "kind"')
    return obj


def _explain(client: LanternClient, args: argparse.Namespace) -> int:
    params = dict(args.param or [])
    bar = ProgressBar(sys.stderr)
    try:
        result = client.explain(
            Path(args.image),
            args.model,
            args.method,
            args.target,
            params,
            objective=args.objective,
            wait=args.wait,
            progress=bar,
            timeout=args.timeout,
        )
    finally:
        bar.done()
    t = result.target
    if t is not None:
        print(f"target: {t.index} {t.label!r} (score {t.score:.4f})")
    else:
        print(f"objective: {result.objective}")
    shape = "x".join(str(s) for s in result.attribution.shape)
    print(
        f"job {result.job}: {result.method} on {result.model} ({result.version[:12]}), "
        f"{result.model_calls} model calls, compute {result.timings.compute_ms:.0f} ms, "
        f"attribution {shape}"
    )
    if result.attribution.values is not None:
        import numpy as np

        v = np.asarray(result.attribution.values, dtype=np.float64)
        print(f"values: min {v.min():.4g}, max {v.max():.4g}, mean {v.mean():.4g}")
    numeric = {k: x for k, x in result.extras.items() if isinstance(x, int | float)}
    if numeric:
        print("extras: " + ", ".join(f"{k} {x:.4g}" for k, x in numeric.items()))
    if args.out:
        fmt: ResultFormat = "overlay" if args.overlay else "png"
        img = client.result_image(result.job, fmt, args.colormap, args.alpha)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, format="PNG")
        print(f"wrote {fmt} {img.width}x{img.height} to {out}")
    return 0


def _jobs_show(client: LanternClient, args: argparse.Namespace) -> int:
    print(client.job(args.id).model_dump_json(indent=2))
    return 0


def _jobs_cancel(client: LanternClient, args: argparse.Namespace) -> int:
    st = client.cancel(args.id)
    print(f"job {st.id}: {st.state.value} at {st.progress:.0%}")
    return 0


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- wiring -----------------------------------------------------------------------------


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import httpx

        from lantern_client import LanternAPIError, LanternClient, LanternTimeoutError

        try:
            with LanternClient(args.url, api_key=args.api_key) as client:
                return handler(client, args)
        except LanternAPIError as e:
            print(f"error: {e.code} ({e.status}): {e.message}", file=sys.stderr)
            return 1
        except LanternTimeoutError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except httpx.TransportError as e:
            print(f"error: cannot reach Lantern at {args.url}: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    return run


def register(sub: Any) -> None:
    """Add the client subcommands to the ``lantern`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, suppress=True)

    models = sub.add_parser("models", help="Register, list and delete models.", parents=[common])
    msub = models.add_subparsers(dest="models_command", required=True)
    add = msub.add_parser("add", help="Register an .onnx model.", parents=[common])
    add.add_argument("file", help="The .onnx file.")
    add.add_argument("--manifest", required=True, help="Manifest JSON file (or inline JSON).")
    add.set_defaults(fn=_run(_models_add))
    ls = msub.add_parser("list", help="List registered models.", parents=[common])
    ls.add_argument("--json", action="store_true", help="Print the full model infos as JSON.")
    ls.set_defaults(fn=_run(_models_list))
    rm = msub.add_parser("rm", help="Delete a model and all its versions.", parents=[common])
    rm.add_argument("name")
    rm.set_defaults(fn=_run(_models_rm))

    ex = sub.add_parser(
        "explain",
        help="Explain a prediction on an image; write the heatmap or overlay PNG.",
        parents=[common],
    )
    ex.add_argument("image", help="Image file (PNG, JPEG, ...).")
    ex.add_argument("--model", default="efficientnet-lite0")
    ex.add_argument("--method", default="occlusion")
    ex.add_argument(
        "--param",
        action="append",
        type=parse_param,
        metavar="KEY=VALUE",
        help="A method param (repeatable); the value is parsed as JSON when it can be, "
        "e.g. --param window=32 --param baseline=blur --param 'baseline=[0,0,255]'.",
    )
    ex.add_argument(
        "--target",
        type=parse_target,
        default="top1",
        help="A class index, a label, or top1 (default).",
    )
    ex.add_argument(
        "--objective",
        type=parse_objective,
        default=None,
        help='What to explain instead of a class, as JSON: e.g. \'{"kind": "channel", '
        '"layer": "head.act", "channel": 3}\' (kinds: class, channel, neuron, layer_norm, '
        "direction).",
    )
    ex.add_argument("--out", help="Write the heatmap PNG here (model input size).")
    ex.add_argument(
        "--overlay",
        action="store_true",
        help="With --out: write the heatmap over the image instead (the image's size).",
    )
    ex.add_argument("--colormap", choices=COLORMAPS, default="jet")
    ex.add_argument("--alpha", type=float, default=0.5, help="Overlay heatmap opacity 0..1.")
    ex.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="S",
        help="Ask the API to answer inline within S seconds (at most 60); then poll.",
    )
    ex.add_argument("--timeout", type=float, default=600.0, help="Give up after this many seconds.")
    ex.set_defaults(fn=_run(_explain))

    jobs = sub.add_parser("jobs", help="Show or cancel explanation jobs.", parents=[common])
    jsub = jobs.add_subparsers(dest="jobs_command", required=True)
    show = jsub.add_parser("show", help="A job's status as JSON.", parents=[common])
    show.add_argument("id")
    show.set_defaults(fn=_run(_jobs_show))
    cancel = jsub.add_parser("cancel", help="Cancel a queued or running job.", parents=[common])
    cancel.add_argument("id")
    cancel.set_defaults(fn=_run(_jobs_cancel))
