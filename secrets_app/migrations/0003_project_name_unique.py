"""Project names become unique within an organisation.

Databases made before this migration may hold several projects with the same
name in one organisation.  The oldest (by ``created_at``, then id) keeps its
name; each later one is renamed ``NAME-2``, ``NAME-3``, … (the first suffix not
taken in that organisation).  Ids do not change, so API clients and grants,
which name projects by id, are unaffected; only ``--project NAME`` lookups of
the renamed projects need the new name.  Each rename is printed.
"""

from django.db import migrations, models


def plan_renames(rows):
    """``{pk: new_name}`` for ``rows`` of ``(pk, organization_id, name)`` in creation order."""
    taken: dict = {}
    for _, org, name in rows:
        taken.setdefault(org, set()).add(name)
    kept: set = set()
    renames = {}
    for pk, org, name in rows:
        if (org, name) not in kept:
            kept.add((org, name))
            continue
        n = 2
        while f"{name}-{n}"[:255] in taken[org]:
            n += 1
        new_name = f"{name}-{n}"[:255]
        taken[org].add(new_name)
        kept.add((org, new_name))
        renames[pk] = new_name
    return renames


def rename_duplicates(apps, schema_editor):
    Project = apps.get_model("secrets_app", "Project")
    projects = Project.objects.using(schema_editor.connection.alias)
    rows = list(projects.order_by("created_at", "id").values_list("pk", "organization_id", "name"))
    for pk, new_name in plan_renames(rows).items():
        print(f"\n  project {pk}: duplicate name renamed {new_name!r}")
        projects.filter(pk=pk).update(name=new_name)


class Migration(migrations.Migration):
    dependencies = [
        ("secrets_app", "0002_region_owner_restore"),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="project",
            constraint=models.UniqueConstraint(
                fields=("organization_id", "name"), name="project_name_unique_per_organization"
            ),
        ),
    ]
