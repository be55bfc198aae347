"""Data model: builders and the apartments they build."""

from django.db import models


class Builder(models.Model):
    """A construction company; names are unique so seeding can be idempotent."""

    name = models.CharField(max_length=200, unique=True)
    city = models.CharField(max_length=100)
    founded_year = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]  # noqa: RUF012 (as 0001_initial has it; a tuple is a model change)

    def __str__(self) -> str:
        return self.name


class Apartment(models.Model):
    """An apartment offered by a builder."""

    builder = models.ForeignKey(Builder, on_delete=models.CASCADE, related_name="apartments")
    title = models.CharField(max_length=200)
    address = models.CharField(max_length=300)
    bedrooms = models.PositiveSmallIntegerField()
    area_m2 = models.DecimalField(max_digits=7, decimal_places=2)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    available = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]  # noqa: RUF012 (as 0001_initial has it; a tuple is a model change)

    def __str__(self) -> str:
        return self.title
