"""gunicorn settings of the web process (the Procfile's `web`, so `make run` and production), also
loaded by the open pixel benchmark (bench/pixel_gunicorn.py), so that it measures the server users run.

gthread workers keep HTTP connections alive between requests: image proxies (Gmail's, Apple's) and
mail clients fetch many pixels over one connection, and a sync worker would close it after each.
WEB_CONCURRENCY (worker processes) and WEB_THREADS (threads per worker) override the defaults below.
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
keepalive = 5
