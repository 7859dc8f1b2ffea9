from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hkms_core.access.principal import Principal
from hkms_core.errors import ServiceError
from keys_app.errors import HierarchyError
from keys_app.services.projects import project_create


class Command(BaseCommand):
    help = "Create a project (with its default key)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--organization-id", help="organization UUID (default: a new one)")
        parser.add_argument("--description", default="")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        organization_id = None
        if options.get("organization_id"):
            try:
                organization_id = uuid.UUID(options["organization_id"])
            except ValueError:
                raise CommandError(f"{options['organization_id']!r} is not an organization id (a UUID)") from None
        try:
            project = project_create(
                principal=Principal.for_command(),
                name=options["name"],
                organization_id=organization_id,
                description=options["description"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        except HierarchyError as exc:  # sealed, not initialised, root key unavailable
            raise CommandError(str(exc)) from None
        result = {
            "project_id": str(project.id),
            "organization_id": str(project.organization_id),
            "name": project.name,
            "default_key_id": str(project.default_key_id),
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(f"project {project.name}: {project.id} (organization {project.organization_id})")
