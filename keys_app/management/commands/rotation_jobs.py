from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import CommandError, CommandParser

from keys_app.management.base import HierarchyCommand
from keys_app.services.jobs import job_release, jobs_list


class Command(HierarchyCommand):
    help = (
        "List rotation jobs (running ones by default) with their lease owners; --release JOB_ID drops the "
        "lease of a stuck job so that the next run of its command resumes it at once (audited). A lease "
        "that has not expired is released only with --force."
    )

    def add_command_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="list finished jobs too (latest 50)")
        parser.add_argument("--release", metavar="JOB_ID", help="release the lease of this running job")
        parser.add_argument(
            "--force", action="store_true", help="with --release: release even a lease that has not expired"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.audited = bool(options.get("release"))  # listing changes nothing
        super().handle(*args, **options)

    def run(self, **options: Any) -> dict[str, Any]:
        if options.get("force") and not options.get("release"):
            raise CommandError("--force applies to --release only")
        if options.get("release"):
            try:
                job_id = uuid.UUID(options["release"])
            except ValueError:
                raise CommandError(f"{options['release']!r} is not a job id (a UUID)") from None
            return job_release(job_id=job_id, force=options["force"])
        return {"jobs": jobs_list(include_done=options["all"])}

    def render(self, result: dict[str, Any]) -> str:
        if "jobs" not in result:
            return (
                f"released {result['kind']} job {result['job']} for {result['scope']} "
                f"(was held by {result['released_owner'] or 'nobody'}); run its command again to resume it"
            )
        if not result["jobs"]:
            return "no rotation jobs"
        lines = []
        for j in result["jobs"]:
            lease = "no lease" if not j["lease_owner"] else f"held by {j['lease_owner']} until {j['lease_until']}"
            if j["lease_owner"] and j["lease_expired"]:
                lease += " (expired)"
            lines.append(
                f"{j['id']} {j['kind']} {j['scope']} {j['state']} {j['phase'] or '-'} "
                f"{j['processed']}/{j['total']} {lease}"
            )
        return "\n".join(lines)
