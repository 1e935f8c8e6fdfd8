"""The Celery application: Redis as broker and result backend; tasks carry job ids only."""

from __future__ import annotations

from celery import Celery

from lantern.settings import Settings


def make_celery(settings: Settings) -> Celery:
    url = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("lantern", broker=url, backend=url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # the last resort: leases re-queue lost work within lease_s; a redelivered
            # message finds its job leased or finished and does nothing
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 4)),
            "unacked_restore_throttle": 1,
        },
        result_expires=settings.result_ttl_s,
        worker_hijack_root_logger=False,
    )
    return app


app = make_celery(Settings())
