"""App config for the apartments catalogue."""

from django.apps import AppConfig


class AptosConfig(AppConfig):
    """Registers the ``aptos`` app with 64-bit primary keys."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "aptos"
    verbose_name = "Apartments"
