"""Contract too early: drops a column the colour still live reads (builders' founded_year)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("aptos", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE aptos_builder DROP COLUMN founded_year",
            reverse_sql="ALTER TABLE aptos_builder ADD COLUMN founded_year smallint NULL",
        )
    ]
