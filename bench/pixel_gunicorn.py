"""gunicorn settings for bench_pixel: the web process's own (gunicorn.conf.py at the repository root,
with WEB_CONCURRENCY / WEB_THREADS as users set them), on the bench's port, plus two hooks: each worker
says when it is ready and writes how many pixel requests it answered when it exits."""

import os
import runpy
from pathlib import Path

_web = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({name: value for name, value in _web.items() if not name.startswith("_") and name != "os"})

bind = os.environ.get("MAILAPP_BENCH_PIXEL_BIND", "127.0.0.1:8000")
loglevel = "warning"
# gunicorn's default control socket is one path per user: another gunicorn on this machine may hold it.
control_socket_disable = True


def worker_exit(server, worker):  # gunicorn's hook signature
    from bench import pixel_wsgi

    pixel_wsgi.write_counts()


def post_worker_init(worker):  # gunicorn's hook signature
    # The app is loaded in this worker: tell the bench, which waits for every worker before measuring.
    Path(os.environ["MAILAPP_BENCH_PIXEL_WORKDIR"], f"ready-{os.getpid()}").touch()
