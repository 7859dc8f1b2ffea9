"""``Project`` leaves secrets_app for hkms_core.tenancy (state only: the table stays).

Runs after tenancy.0001 created the model in its state and after keys_app and
access re-pointed their foreign keys at ``tenancy.Project``.  Nothing changes
in the database: ``Secret.project`` keeps its column and constraint on
``secrets_app_project``.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("secrets_app", "0004_project_default_key_uuid"),
        ("tenancy", "0001_initial"),
        ("keys_app", "0005_key_project_in_tenancy"),
        ("access", "0005_apikey_project_in_tenancy"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="secret",
                    name="project",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="secrets", to="tenancy.project"
                    ),
                ),
                migrations.DeleteModel(name="Project"),
            ],
            database_operations=[],
        ),
    ]
