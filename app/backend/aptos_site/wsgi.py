"""WSGI entry point that gunicorn loads as ``aptos_site.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aptos_site.settings")

application = get_wsgi_application()
