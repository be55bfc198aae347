"""Tag every response with the deployment colour and release."""

import os
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class BlueGreenHeadersMiddleware:
    """Add X-Bluegreen-Colour/-Release so tests can tell which side answered."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.colour = os.environ.get("BG_COLOUR", "unknown")
        self.release = os.environ.get("BG_RELEASE", "unknown")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response["X-Bluegreen-Colour"] = self.colour
        response["X-Bluegreen-Release"] = self.release
        return response
