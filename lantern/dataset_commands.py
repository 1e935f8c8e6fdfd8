"""``lantern datasets add|list|show|rm``: register and inspect datasets over the API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lantern.commands import _run, add_global_options
from lantern_client import LanternClient


def _add(client: LanternClient, args: argparse.Namespace) -> int:
    if args.server_path:
        info = client.register_dataset_directory(args.name, args.path, index=args.index,
                                                 strict=args.strict)
    else:
        info = client.upload_dataset(Path(args.path), args.name, index=args.index,
                                     strict=args.strict, description=args.description)
    print(f"registered {info.name} version {info.version[:12]}: {info.count} images, "
          f"{len(info.classes)} classes")
    for r in info.rejected:
        print(f"  left out {r.path}: {r.code} ({r.reason})")
    return 0


def _list(client: LanternClient, args: argparse.Namespace) -> int:
    datasets = client.list_datasets()
    if args.json:
        print(json.dumps([d.model_dump(mode="json") for d in datasets], indent=2))
        return 0
    rows = [("NAME", "VERSION", "IMAGES", "CLASSES", "SIZES", "SOURCE")]
    for d in datasets:
        s = d.sizes
        sizes = (f"{s.min_width}x{s.min_height}" if (s.min_width, s.min_height) == (
            s.max_width, s.max_height) else f"{s.min_width}x{s.min_height}..{s.max_width}x"
            f"{s.max_height}")
        rows.append((d.name, d.version[:12], str(d.count), str(len(d.classes)), sizes,
                     d.source))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _show(client: LanternClient, args: argparse.Namespace) -> int:
    print(json.dumps(client.get_dataset(args.name).model_dump(mode="json"), indent=2))
    return 0


def _rm(client: LanternClient, args: argparse.Namespace) -> int:
    client.delete_dataset(args.name)
    print(f"deleted {args.name}")
    return 0


def register(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, suppress=True)
    ds = sub.add_parser("datasets", help="Register, list, show and delete datasets.",
                        parents=[common])
    dsub = ds.add_subparsers(dest="datasets_command", required=True)
    add = dsub.add_parser("add", help="Upload a zip of images (or, with --server-path, "
                          "register a directory on the server).", parents=[common])
    add.add_argument("path", help="The .zip (or the server's directory, --server-path).")
    add.add_argument("--name", required=True)
    add.add_argument("--index", default=None, help="An index CSV/JSON inside the dataset.")
    add.add_argument("--strict", action="store_true", help="Refuse it if a file is no image.")
    add.add_argument("--description", default="")
    add.add_argument("--server-path", action="store_true",
                     help="PATH is a directory on the server, under a dataset root.")
    add.set_defaults(fn=_run(_add))
    ls = dsub.add_parser("list", help="List datasets.", parents=[common])
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=_run(_list))
    show = dsub.add_parser("show", help="A dataset's record as JSON.", parents=[common])
    show.add_argument("name")
    show.set_defaults(fn=_run(_show))
    rm = dsub.add_parser("rm", help="Delete a dataset.", parents=[common])
    rm.add_argument("name")
    rm.set_defaults(fn=_run(_rm))
