"""Expand: a new nullable column; the colour still live never reads it, so it keeps working."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("aptos", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE aptos_builder ADD COLUMN IF NOT EXISTS website varchar(200) NULL",
            reverse_sql="ALTER TABLE aptos_builder DROP COLUMN IF EXISTS website",
        )
    ]
