"""Gunicorn settings for the frontend container (Debian gunicorn 20.1)."""

import os

bind = "0.0.0.0:3000"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Run from this directory so ``app:application`` imports wherever we start.
chdir = os.path.dirname(os.path.abspath(__file__))
# Longer than the 3 s backend timeout, so a slow backend becomes a 502, not a kill.
timeout = 15
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
worker_tmp_dir = "/dev/shm"
forwarded_allow_ips = "*"
