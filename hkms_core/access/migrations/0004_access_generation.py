from django.db import migrations, models


def create_row(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    apps.get_model("access", "AccessGeneration").objects.using("default").get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("access", "0003_role_groups")]

    operations = [
        migrations.CreateModel(
            name="AccessGeneration",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("value", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(create_row, migrations.RunPython.noop),
    ]
