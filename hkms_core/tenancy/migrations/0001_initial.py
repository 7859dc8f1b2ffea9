"""``Project`` moves here from secrets_app, in place (issue 13).

Databases made before the move already hold the table ``secrets_app_project``:
the model is created in this app's *state* only (``db_table`` keeps the name),
after secrets_app.0004 turned ``default_key`` into a plain UUID column.  Then
keys_app.0005 and access.0005 re-point their foreign keys here and
secrets_app.0005 drops the model from its state; none of them touches the
database.  A fresh database runs the same path (secrets_app.0001 creates the
table), so both end in the same schema.

Content types: auth permissions, guardian's object permissions and role grants
name the project's content type by id.  The row ``(secrets_app, project)`` is
renamed ``(tenancy, project)`` in place, so its id -- and every grant and
permission pointing at it -- survives.  Skipped when there is no such row
(nothing to keep) or when a ``(tenancy, project)`` row already exists (the
rename would clash; reported).  Reversible: the reverse renames it back.  This
migration runs after access.0003, which creates the role groups (and with them
the content type on a fresh database), so the rename always sees it.
"""

import uuid

from django.db import migrations, models


def _rename_content_type(apps, schema_editor, old: str, new: str) -> None:
    if schema_editor.connection.alias != "default":
        return
    manager = apps.get_model("contenttypes", "ContentType").objects
    content_types = manager.using("default")
    row = content_types.filter(app_label=old, model="project").first()
    if row is None:
        return
    if content_types.filter(app_label=new, model="project").exists():
        print(f"\n  content type {old}.project kept: a {new}.project content type already exists")
        return
    row.app_label = new
    row.save(update_fields=["app_label"])
    manager.clear_cache()


def project_content_type_to_tenancy(apps, schema_editor):
    _rename_content_type(apps, schema_editor, "secrets_app", "tenancy")


def project_content_type_to_secrets_app(apps, schema_editor):
    _rename_content_type(apps, schema_editor, "tenancy", "secrets_app")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("secrets_app", "0004_project_default_key_uuid"),
        ("access", "0003_role_groups"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Project",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("organization_id", models.UUIDField(db_index=True, default=uuid.uuid4)),
                        ("name", models.CharField(max_length=255)),
                        ("description", models.TextField(blank=True, default="")),
                        ("default_key_id", models.UUIDField(blank=True, db_index=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "secrets_app_project",
                        "ordering": ["name", "id"],
                        "permissions": [
                            ("view_secret_metadata", "View secret metadata in the project"),
                            ("read_secret_payload", "Read secret payloads in the project"),
                            ("write_secret", "Add versions and edit secrets in the project"),
                            ("admin_secret", "Delete, protect and manage secrets in the project"),
                            ("view_key_metadata", "View key metadata in the project"),
                            ("use_key", "Use keys of the project"),
                            ("manage_key", "Create, rotate and manage keys in the project"),
                            ("view_audit_log", "Read the project's audit log"),
                            ("manage_roles", "Grant and revoke roles in the project"),
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("organization_id", "name"), name="project_name_unique_per_organization"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(project_content_type_to_tenancy, project_content_type_to_secrets_app),
    ]
