"""The ``lantern`` command: serve the API, run a worker, and talk to a running service
(models, explain, jobs: see :mod:`lantern.commands`)."""

from __future__ import annotations

import argparse
import logging
import sys

from lantern.commands import add_global_options, register
from lantern.dataset_commands import register as register_datasets
from lantern.eval_command import register as register_eval
from lantern.settings import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    settings = Settings()
    if args.api_only and not settings.redis_url:
        print(
            "lantern serve --api-only needs LANTERN_REDIS_URL: without it the API runs its "
            "own in-process worker (embedded mode). Set LANTERN_REDIS_URL and start workers "
            "with `lantern worker`, or drop --api-only.",
            file=sys.stderr,
        )
        return 2
    mode = (
        f"Redis at {settings.redis_url}" if settings.redis_url else "embedded (in-process worker)"
    )
    print(f"Lantern: preparing the built-in model in {settings.data_dir} ...", flush=True)
    factory = None
    if settings.redis_url:
        from workers.dispatch import CeleryDispatcher  # the composition root wires Celery in

        factory = CeleryDispatcher
    app = create_app(settings, dispatcher=factory)
    host = "localhost" if args.host in ("0.0.0.0", "127.0.0.1") else args.host
    print(f"Lantern serving on http://{host}:{args.port}  [{mode}]  docs: /docs", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,  # our JSON logging (lantern.logs); the app logs each request
        access_log=False,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    settings = Settings()
    if not settings.redis_url:
        print(
            "lantern worker needs LANTERN_REDIS_URL (e.g. redis://localhost:6379/0).",
            file=sys.stderr,
        )
        return 2
    from jobs.runtime import Runtime
    from workers.app import app

    Runtime(settings).ensure_builtin()
    argv = [
        "worker",
        f"--loglevel={args.log_level.upper()}",
        f"--concurrency={args.concurrency}",
        "--pool=prefork",
        f"--queues={settings.queue}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lantern", description="Explanations of ONNX models.")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="Run the API (embedded worker unless LANTERN_REDIS_URL is set)."
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--api-only",
        action="store_true",
        help="API only: with LANTERN_REDIS_URL set, serve is API only and jobs run on "
        "separate `lantern worker` processes (this is already the case without the flag); "
        "without LANTERN_REDIS_URL, serve is embedded (API plus an in-process worker), so "
        "--api-only refuses to start instead.",
    )
    serve.set_defaults(fn=_serve)
    worker = sub.add_parser("worker", help="Run a Celery worker (needs LANTERN_REDIS_URL).")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--hostname", default=None)
    worker.add_argument("--log-level", default="info")
    worker.set_defaults(fn=_worker)
    register(sub)
    register_eval(sub)
    register_datasets(sub)
    args = parser.parse_args(argv)
    if args.command in ("serve", "worker"):
        from lantern.logs import configure

        configure(Settings().log_format)
    else:
        logging.basicConfig(level=logging.WARNING)
    code: int = args.fn(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
