"""The FastAPI application factory."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from jobs.dispatch import Dispatcher, EmbeddedDispatcher
from jobs.reconciler import Reconciler
from jobs.runtime import Runtime
from lantern import __version__
from lantern.settings import Settings
from service.errors import install_error_handlers
from service.inputs import BodyLimitMiddleware
from service.observe import ObserveMiddleware
from service.routers import (
    callbacks,
    datasets,
    explanations,
    health,
    jobs,
    kserve,
    methods,
    models,
)
from service.routers.viewer import mount_viewer
from service.state import ServiceState

log = logging.getLogger("lantern.api")


def _prepare(state: ServiceState) -> None:
    try:
        state.rt.ensure_builtin()
        state.ready = True
    except Exception as e:  # reported by /readyz; the API still serves uploaded models
        log.exception("built-in model could not be prepared")
        state.startup_error = f"{type(e).__name__}: {e}"
        state.ready = not state.rt.settings.builtin_model


DispatcherFactory = Callable[[Runtime], Dispatcher]


def create_app(
    settings: Settings | None = None,
    *,
    block_startup: bool = True,
    dispatcher: DispatcherFactory | None = None,
) -> FastAPI:
    """Build the app. Embedded mode (no Redis URL) runs jobs on an in-process pool.

    ``dispatcher`` hands jobs to workers (``lantern serve`` passes the Celery one when
    LANTERN_REDIS_URL is set: the service itself imports no Celery); by default the
    embedded, in-process worker. ``block_startup``: build the built-in model before serving
    (else in the background, with /readyz answering 503 until it is ready).
    """
    settings = settings or Settings()
    rt = Runtime(settings)
    disp: Dispatcher = (
        dispatcher(rt)
        if dispatcher is not None
        else EmbeddedDispatcher(rt, settings.embedded_workers)
    )
    if settings.auth_required and not settings.api_keys:
        raise ValueError("LANTERN_AUTH_REQUIRED is set but LANTERN_API_KEYS is empty.")
    state = ServiceState(
        rt=rt,
        dispatcher=disp,
        keys={k.sha256: k for k in settings.api_keys},
        reconciler=Reconciler(rt, disp) if settings.redis_url and dispatcher else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if block_startup:
            _prepare(state)
        else:
            threading.Thread(target=_prepare, args=(state,), daemon=True).start()
        if state.reconciler is not None:
            state.reconciler.start()
        yield
        if state.reconciler is not None:
            state.reconciler.stop()
        disp.close()
        state.sync_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="Lantern",
        version=__version__,
        summary="Explanations of ONNX model predictions, on demand.",
        lifespan=lifespan,
    )
    app.state.lantern = state
    install_error_handlers(app)
    # base64 grows a file by 4/3; multipart adds a little framing.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_upload_bytes * 4 // 3 + 64 * 1024,
        model_limit=settings.max_model_bytes + 1024 * 1024,
        dataset_limit=settings.max_dataset_upload_bytes + 1024 * 1024,
    )

    app.add_middleware(ObserveMiddleware)

    for r in (health.router, models.router, methods.router, explanations.router, jobs.router,
              datasets.router, kserve.router, callbacks.router):
        app.include_router(r)
    mount_viewer(app)
    return app
