"""gunicorn settings of the web process (the Procfile's `web`, so `make run` and production), also
loaded by the open pixel benchmark (bench/pixel_gunicorn.py), so that it measures the server users run.

gthread workers keep HTTP connections alive between requests: image proxies (Gmail's, Apple's) and
mail clients fetch many pixels over one connection, and a sync worker would close it after each.
WEB_CONCURRENCY (worker processes) and WEB_THREADS (threads per worker) override the defaults below.
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# 8 threads: more requests of a worker share each group-commit round trip to Redis (about 4 opens a
# batch against 2 with 4 threads), which lifted the lone pixel from 0.59x to 0.68x of a bare WSGI GIF
# (README, Benchmarks); the send beside it was unchanged.
threads = int(os.environ.get("WEB_THREADS", "8"))
keepalive = 5
# gunicorn's control socket (`gunicornc`; new in gunicorn 24) is not used by mailapp, and stopping its
# server thread cost the web process up to 4 s of every stop, past honcho's 5 s before a SIGKILL
# under `make run`. Off, two web servers of one user also no longer share its per-user path.
control_socket_disable = True
