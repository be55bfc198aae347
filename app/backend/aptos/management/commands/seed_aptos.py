"""Seed a deterministic catalogue so every colour and test sees the same data."""

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from aptos.models import Apartment, Builder

BUILDERS: list[tuple[str, str, int]] = [
    ("Azure Homes", "Lisbon", 1998),
    ("Verdant Construction", "Porto", 2005),
    ("Cobalt Living", "Madrid", 1987),
    ("Emerald Estates", "Valencia", 2012),
    ("Granite & Sons", "Seville", 1965),
]
STREETS = ["Rua das Flores", "Avenida Central", "Calle Mayor", "Rua Nova", "Paseo del Prado"]
# Arbitrary constant so concurrent seeders (blue and green) run one after another.
SEED_LOCK_ID = 4_827_001


def builder_spec(index: int) -> tuple[str, str, int]:
    """Name, city and founding year of the index-th builder (0-based)."""
    if index < len(BUILDERS):
        return BUILDERS[index]
    _, city, year = BUILDERS[index % len(BUILDERS)]
    return (f"Builder {index + 1:03d}", city, year + index)


def apartment_fields(number: int, builder: Builder) -> dict[str, Any]:
    """Deterministic attributes of apartment ``number`` (1-based)."""
    bedrooms = 1 + number % 4
    area = Decimal(35 + bedrooms * 18) + Decimal("2.5") * (number % 7)
    price_per_m2 = Decimal(3000 + (number % 5) * 250)
    return {
        "builder": builder,
        "address": f"{number} {STREETS[number % len(STREETS)]}, {builder.city}",
        "bedrooms": bedrooms,
        "area_m2": area.quantize(Decimal("0.01")),
        "price": (area * price_per_m2).quantize(Decimal("0.01")),
        "available": number % 5 != 0,
    }


class Command(BaseCommand):
    """``manage.py seed_aptos [--builders N] [--apartments M]``; safe to re-run."""

    help = "Create a deterministic set of builders and apartments (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--builders", type=int, default=5, help="number of builders")
        parser.add_argument("--apartments", type=int, default=40, help="number of apartments")

    def handle(self, *args: Any, **options: Any) -> None:
        n_builders: int = options["builders"]
        n_apartments: int = options["apartments"]
        if n_builders < 1 or n_apartments < 0:
            raise CommandError("--builders must be >= 1 and --apartments >= 0")

        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEED_LOCK_ID])
            builders, new_builders = [], 0
            for index in range(n_builders):
                name, city, year = builder_spec(index)
                builder, created = Builder.objects.get_or_create(
                    name=name, defaults={"city": city, "founded_year": year}
                )
                builders.append(builder)
                new_builders += created
            new_apartments = 0
            for number in range(1, n_apartments + 1):
                _, created = Apartment.objects.get_or_create(
                    title=f"Apartment {number:03d}",
                    defaults=apartment_fields(number, builders[(number - 1) % n_builders]),
                )
                new_apartments += created

        self.stdout.write(
            f"builders: {new_builders} created, {n_builders - new_builders} existing; "
            f"apartments: {new_apartments} created, {n_apartments - new_apartments} existing"
        )
