"""Top-level routes: the JSON API under /api/v1/ and the Django admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("aptos.urls")),
    path("admin/", admin.site.urls),
]

# API clients get JSON errors; everything else keeps Django's HTML pages.
handler404 = "aptos.views.not_found"
handler500 = "aptos.views.server_error"
