from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.management.commands._common import parse_expiry
from hkms_core.access.principal import Principal
from hkms_core.access.projects import project_get
from hkms_core.access.roles import ROLE_NAMES
from hkms_core.access.services import role_grant
from hkms_core.errors import HkmsError, ObjectNotFound
from keys_app.services.projects import project_create


class Command(BaseCommand):
    help = "Create an API key for a user (secret shown once); optionally create the user/project and grant a role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="username owning the key")
        parser.add_argument("--create-user", action="store_true", help="create the user if missing")
        project = parser.add_mutually_exclusive_group()
        project.add_argument("--project", help="project id or name (the key's default project)")
        project.add_argument("--create-project", metavar="NAME", help="create a project with this name")
        parser.add_argument("--role", choices=ROLE_NAMES, help="grant this role on the project")
        parser.add_argument("--expires-in", help="lifetime such as 30d, 12h or 90m (default: no expiry)")
        parser.add_argument("--description", default="")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        operator = Principal.for_command()
        expires_in = parse_expiry(options["expires_in"]) if options.get("expires_in") else None
        if options.get("role") and not (options.get("project") or options.get("create_project")):
            raise CommandError("--role needs --project or --create-project")
        users = get_user_model().objects
        try:
            with transaction.atomic():
                user = users.filter(username=options["user"]).first()
                if user is None:
                    if not options["create_user"]:
                        raise CommandError(f"user {options['user']!r} does not exist (add --create-user)")
                    user = users.create_user(username=options["user"])
                project = None
                if options.get("create_project"):
                    project = project_create(principal=operator, name=options["create_project"])
                elif options.get("project"):
                    try:
                        project = project_get(principal=operator, project_id=options["project"])
                    except ObjectNotFound:
                        raise CommandError(
                            f"project {options['project']!r} does not exist: create it first "
                            f"(manage.py create_project NAME) or use --create-project NAME"
                        ) from None
                if options.get("role") and project is not None:
                    role_grant(principal=operator, user=user, role=options["role"], obj=project)
                issued = api_key_create(
                    principal=operator,
                    user=user,
                    project=project,
                    expires_in=expires_in,
                    description=options["description"],
                )
        except HkmsError as exc:  # refused, or sealed / not initialised / root key unavailable
            raise CommandError(exc.message) from None
        result = {
            "access_key": issued.api_key.access_key,
            "secret_key": issued.secret_key,
            "project_id": str(project.id) if project else None,
            "organization_id": str(project.organization_id) if project else None,
            "user": user.get_username(),
            "expires_at": issued.api_key.expires_at.isoformat() if issued.api_key.expires_at else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"access key: {result['access_key']}")
        self.stdout.write(f"secret key: {result['secret_key']}   (shown once: store it now)")
        if project is not None:
            self.stdout.write(f"project id: {result['project_id']}")
            self.stdout.write(f"organization id: {result['organization_id']}")
        self.stdout.write(f"user: {result['user']}")
