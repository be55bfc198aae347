"""Tag every response with the deployment colour and release; inject faults for tests."""

import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse


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


class FaultInjectionMiddleware:
    """Turn this release into a broken one, for the deploy tool's own tests and scenarios.

    ``APTOS_FAULT`` (unset in a real deployment) names the fault; the health endpoint is never
    affected, which is what makes these releases dangerous: they look healthy.

    - ``api-errors``: every API request answers 500.
    - ``public-api-errors``: the same, only for traffic through the public frontend (HAProxy's
      ``X-Bluegreen-Route: public``), so the release passes gates on the preview route.
    - ``slow:<ms>``: every API request waits that long first.
    - ``crash-after:<s>``: the server shuts down that many seconds after its first request
      through the public frontend (a release that dies some seconds after the switch).
    - ``busy-errors``: an API request that arrives while another one is in progress (in any
      worker) answers 503, and each holds 20 ms: one client at a time never sees an error, a
      few concurrent users soon do (errors only under load).
    """

    BUSY_LOCK = "/tmp/aptos-busy.lock"
    BUSY_HOLD_S = 0.02

    HEALTH_PATH = "/api/v1/health"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        fault = os.environ.get("APTOS_FAULT", "").strip()
        self.errors = fault in ("api-errors", "public-api-errors")
        self.public_only = fault == "public-api-errors"
        self.busy_errors = fault == "busy-errors"
        self.delay_s = 0.0
        self.crash_after_s: float | None = None
        if fault.startswith("slow:"):
            self.delay_s = int(fault.removeprefix("slow:")) / 1000
        elif fault.startswith("crash-after:"):
            self.crash_after_s = float(fault.removeprefix("crash-after:"))
        elif fault and not (self.errors or self.busy_errors):
            raise ImproperlyConfigured(f"unknown APTOS_FAULT {fault!r}")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.crash_after_s is not None and request.headers.get("X-Bluegreen-Route") == "public":
            # Gunicorn's master is PID 1: SIGINT is its quick shutdown, and the container exits.
            threading.Timer(self.crash_after_s, os.kill, (1, signal.SIGINT)).start()
            self.crash_after_s = None
        path = request.path
        if path.startswith("/api/v1/") and path.rstrip("/") != self.HEALTH_PATH:
            if self.delay_s:
                time.sleep(self.delay_s)
            route = request.headers.get("X-Bluegreen-Route", "")
            if self.errors and (not self.public_only or route == "public"):
                return JsonResponse({"error": "injected fault"}, status=500)
            if self.busy_errors:
                return self._one_at_a_time(request)
        return self.get_response(request)

    def _one_at_a_time(self, request: HttpRequest) -> HttpResponse:
        with open(self.BUSY_LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return JsonResponse({"error": "injected fault: busy"}, status=503)
            time.sleep(self.BUSY_HOLD_S)
            return self.get_response(request)
