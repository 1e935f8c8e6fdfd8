"""``lantern eval``: every image method over a folder of images, scored by deletion and
insertion AUC, with runtime and forward passes per method. Runs here, on the engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_METHODS = "grad_cam,saliency,integrated_gradients,occlusion,lime,rise"


def _params(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``method.key=value`` pairs (values parsed as JSON when they can be)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--param wants METHOD.KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(method, {})[name] = value
    return out


def _run(args: argparse.Namespace) -> int:
    from engine.errors import LanternError
    from engine.quality.evaluate import evaluate_folder, format_table
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    rt = Runtime(Settings())
    try:
        rt.ensure_builtin()
        model = rt.load(args.model)
        rows = evaluate_folder(
            model,
            Path(args.folder),
            [m.strip() for m in args.methods.split(",") if m.strip()],
            _params(args.param),
            args.target,
            limit=args.limit,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (LanternError, ValueError) as e:
        print(f"lantern eval: {getattr(e, 'message', e)}", file=sys.stderr)
        return 2
    print(format_table(rows, args.format))
    return 0


def register(sub: Any) -> None:
    ev = sub.add_parser(
        "eval",
        help="Score image methods over a folder: deletion/insertion AUC, runtime, passes.",
    )
    ev.add_argument("folder", help="A folder of images (PNG, JPEG, ...).")
    ev.add_argument("--model", default="efficientnet-lite0")
    ev.add_argument("--methods", default=DEFAULT_METHODS, help="Comma-separated method names.")
    ev.add_argument(
        "--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
        help="A method param, e.g. --param occlusion.window=32 (repeatable).",
    )
    ev.add_argument("--target", default="top1")
    ev.add_argument("--limit", type=int, default=None, help="At most this many images.")
    ev.add_argument("--format", choices=["markdown", "plain"], default="markdown")
    ev.set_defaults(fn=_run)
