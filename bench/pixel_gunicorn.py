"""gunicorn settings for bench_pixel: each worker writes how many pixel requests it answered on exit."""

import os

bind = os.environ.get("MAILAPP_BENCH_PIXEL_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("MAILAPP_BENCH_PIXEL_WORKERS", "4"))
worker_class = os.environ.get("MAILAPP_BENCH_PIXEL_WORKER_CLASS", "sync")
threads = int(os.environ.get("MAILAPP_BENCH_PIXEL_THREADS", "1"))
backlog = 2048
keepalive = 5
accesslog = None
loglevel = "warning"


def worker_exit(server, worker):  # noqa: ANN001, ANN201, ARG001 - gunicorn's hook signature
    from bench import pixel_wsgi

    pixel_wsgi.write_counts()


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn's hook signature
    # The app is loaded in this worker: tell the bench, which waits for every worker before measuring.
    from pathlib import Path

    Path(os.environ["MAILAPP_BENCH_PIXEL_WORKDIR"], f"ready-{os.getpid()}").touch()
