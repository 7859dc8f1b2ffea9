"""Create the role groups (secret_reader … project_admin) with their permissions.

Runs on the default database only (the router sends model-less operations there).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from hkms_core.access.roles import PERMISSIONS_BY_MODEL, ROLES

#: Content types as they were named when this migration was written: the project moved to
#: hkms_core.tenancy later, and tenancy.0001 renames its content type in place.
_LABEL_AT_THIS_MIGRATION = {"tenancy.project": "secrets_app.project"}


def create_roles(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using="default")
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    content_type_model = apps.get_model("contenttypes", "ContentType")
    for role, actions in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=role)
        permissions = []
        for label, available in PERMISSIONS_BY_MODEL.items():
            app_label, model = _LABEL_AT_THIS_MIGRATION.get(label, label).split(".")
            content_type = content_type_model.objects.get(app_label=app_label, model=model)
            codenames = [str(action) for action in actions if action in available]
            permissions += list(permission_model.objects.filter(content_type=content_type, codename__in=codenames))
        group.permissions.set(permissions)


def delete_roles(apps, schema_editor):
    if schema_editor.connection.alias != "default":
        return
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0002_initial"),
        ("secrets_app", "0001_initial"),
        ("keys_app", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
