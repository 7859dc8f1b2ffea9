"""``Key.project`` points at ``tenancy.Project`` (state only: same table, column and constraint)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("keys_app", "0004_rotation_lease"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="key",
                    name="project",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="keys", to="tenancy.project"
                    ),
                ),
            ],
            database_operations=[],
        ),
    ]
