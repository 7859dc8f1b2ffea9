import uuid

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list = []

    operations = [
        migrations.CreateModel(
            name="BackupRecord",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField()),
                ("rek_versions", models.JSONField(default=list)),
                (
                    "state",
                    models.CharField(
                        choices=[("retained", "Retained"), ("forgotten", "Forgotten")], default="retained", max_length=16
                    ),
                ),
                ("archive", models.CharField(blank=True, default="", max_length=1024)),
                ("sha256", models.CharField(blank=True, default="", max_length=64)),
                ("forgotten_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"ordering": ["created_at"]},
        ),
    ]
