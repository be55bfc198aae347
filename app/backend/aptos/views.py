"""JSON API views: paginated lists, details and a database-backed health check."""

import logging
import os
from collections.abc import Callable
from typing import Any

from django.core.paginator import EmptyPage, Paginator
from django.db import Error as DatabaseError
from django.db import connection
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .models import Apartment, Builder

logger = logging.getLogger(__name__)

COLOUR = os.environ.get("BG_COLOUR", "unknown")
RELEASE = os.environ.get("BG_RELEASE", "unknown")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

Serializer = Callable[[Any], dict[str, Any]]


def error(message: str, status: int) -> JsonResponse:
    """Every API error has the same small shape."""
    return JsonResponse({"error": message}, status=status)


def builder_json(builder: Builder) -> dict[str, Any]:
    """Public representation of a builder."""
    return {
        "id": builder.id,
        "name": builder.name,
        "city": builder.city,
        "founded_year": builder.founded_year,
        "created_at": builder.created_at.isoformat(),
    }


def apartment_json(apartment: Apartment) -> dict[str, Any]:
    """Public representation of an apartment; decimals as strings keep precision."""
    return {
        "id": apartment.id,
        "builder": apartment.builder_id,
        "builder_name": apartment.builder.name,
        "title": apartment.title,
        "address": apartment.address,
        "bedrooms": apartment.bedrooms,
        "area_m2": str(apartment.area_m2),
        "price": str(apartment.price),
        "available": apartment.available,
        "created_at": apartment.created_at.isoformat(),
    }


def parse_positive_int(raw: str | None, default: int) -> int | None:
    """Return a positive int, the default when absent, or None when invalid."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


def page_url(request: HttpRequest, page: int, page_size: int) -> str:
    """Absolute link to another page of the same list."""
    query = request.GET.copy()
    query["page"] = str(page)
    query["page_size"] = str(page_size)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def paginated(request: HttpRequest, queryset: QuerySet, serialize: Serializer) -> JsonResponse:
    """Serve one page of ``queryset`` in the API's list envelope."""
    page_number = parse_positive_int(request.GET.get("page"), 1)
    page_size = parse_positive_int(request.GET.get("page_size"), DEFAULT_PAGE_SIZE)
    if page_number is None:
        return error("page must be a positive integer", 400)
    if page_size is None or page_size > MAX_PAGE_SIZE:
        return error(f"page_size must be an integer between 1 and {MAX_PAGE_SIZE}", 400)
    try:
        page = Paginator(queryset, page_size).page(page_number)
    except EmptyPage:
        return error("not found", 404)
    return JsonResponse(
        {
            "count": page.paginator.count,
            "page": page_number,
            "page_size": page_size,
            "next": page_url(request, page_number + 1, page_size) if page.has_next() else None,
            "previous": (
                page_url(request, page_number - 1, page_size) if page.has_previous() else None
            ),
            "results": [serialize(item) for item in page.object_list],
        }
    )


def detail(queryset: QuerySet, pk: int, serialize: Serializer) -> JsonResponse:
    """Serve one object, or the API's 404."""
    obj: Model | None = queryset.filter(pk=pk).first()
    if obj is None:
        return error("not found", 404)
    return JsonResponse(serialize(obj))


def builders() -> QuerySet:
    """Builders in a stable order for pagination."""
    return Builder.objects.order_by("id")


def apartments() -> QuerySet:
    """Apartments with their builder joined, in a stable order."""
    return Apartment.objects.select_related("builder").order_by("id")


@require_GET
def builder_list(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/builders/"""
    return paginated(request, builders(), builder_json)


@require_GET
def builder_detail(request: HttpRequest, pk: int) -> JsonResponse:
    """GET /api/v1/builders/<id>/"""
    return detail(builders(), pk, builder_json)


@require_GET
def apartment_list(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/aptos/"""
    return paginated(request, apartments(), apartment_json)


@require_GET
def apartment_detail(request: HttpRequest, pk: int) -> JsonResponse:
    """GET /api/v1/aptos/<id>/"""
    return detail(apartments(), pk, apartment_json)


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Report healthy only after a real database round trip."""
    body = {"status": "ok", "colour": COLOUR, "release": RELEASE, "database": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # The class name is enough to diagnose; the message may name hosts or users.
        logger.warning("health check: database unreachable (%s)", type(exc).__name__)
        body.update(status="error", database="unreachable")
        return JsonResponse(body, status=503)
    return JsonResponse(body)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """JSON 404 for the API, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error("not found", 404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """JSON 500 for the API, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error("internal server error", 500)
    return defaults.server_error(request)
