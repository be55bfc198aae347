"""Admin screens so operators can inspect and edit the catalogue."""

from django.contrib import admin

from .models import Apartment, Builder


@admin.register(Builder)
class BuilderAdmin(admin.ModelAdmin):
    """List builders with their city and founding year."""

    list_display = ("id", "name", "city", "founded_year", "created_at")
    search_fields = ("name", "city")


@admin.register(Apartment)
class ApartmentAdmin(admin.ModelAdmin):
    """List apartments with the fields buyers filter on."""

    list_display = ("id", "title", "builder", "bedrooms", "area_m2", "price", "available")
    list_filter = ("available", "bedrooms", "builder")
    list_select_related = ("builder",)
    search_fields = ("title", "address")
