"""The project's default key becomes a plain UUID column (issue 13, the Project move).

``Project`` moves down to the foundation (hkms_core.tenancy), which must not
point at keys_app: ``default_key`` stops being a foreign key.  The column keeps
its name (``default_key_id``), type and index; only the database's foreign-key
constraint goes (PostgreSQL drops it; SQLite rebuilds the table without it).
keys_app keeps the guarantee ``PROTECT`` gave (keys_app.services.projects).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("secrets_app", "0003_project_name_unique"),
    ]

    operations = [
        migrations.AlterField(
            model_name="project",
            name="default_key",
            field=models.UUIDField(blank=True, db_column="default_key_id", db_index=True, null=True),
        ),
    ]
