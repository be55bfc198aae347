"""Gunicorn settings for the backend container (Debian gunicorn 20.1)."""

import os

bind = "0.0.0.0:8000"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Run from the project directory so ``aptos_site.wsgi`` imports wherever we start.
chdir = os.path.dirname(os.path.abspath(__file__))
timeout = 30
# In-flight requests get this long to finish on SIGTERM during a colour switch.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Heartbeat files on tmpfs: the container's overlay filesystem can stall workers.
worker_tmp_dir = "/dev/shm"
# Only HAProxy and the frontend can reach us on the private network.
forwarded_allow_ips = "*"
