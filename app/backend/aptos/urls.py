"""Routes of the JSON API, mounted under /api/v1/."""

from django.urls import path

from . import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("builders/", views.builder_list, name="builder-list"),
    path("builders/<int:pk>/", views.builder_detail, name="builder-detail"),
    path("aptos/", views.apartment_list, name="apartment-list"),
    path("aptos/<int:pk>/", views.apartment_detail, name="apartment-detail"),
]
