"""The audit log for auditors: filters, chain verification, JSONL export (both audited)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.http import require_POST

from hkms_core.access.principal import Principal
from hkms_core.audit.services import audit_record
from hkms_site.console.forms import AuditFilterForm
from hkms_site.console.principal import console_principal
from hkms_site.console.selectors import (
    AuditFilter,
    audit_chain_status,
    audit_events_filtered,
    audit_rows,
    principal_can_audit,
)
from hkms_site.console.views.common import denied, page


def _filter(form: AuditFilterForm) -> AuditFilter:
    data = form.cleaned_data if form.is_valid() else {}
    return AuditFilter(**{k: v for k, v in data.items() if v})


def audit_log(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    if not principal_can_audit(principal):
        return denied(request, "read the audit log")
    form = AuditFilterForm(request.GET or None)
    events = audit_events_filtered(principal, _filter(form)).order_by("-seq")
    page_obj = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page_obj": page_obj,
        "query": query.urlencode(),
        "chain": audit_chain_status(),
    }
    return page(request, "console/audit_log.html", context, title="Audit log")


@require_POST
def audit_log_verify(request: HttpRequest) -> HttpResponse:
    principal = console_principal(request)
    if not principal_can_audit(principal):
        return denied(request, "verify the audit log")
    result = audit_chain_status(fresh=True)
    with transaction.atomic():
        audit_record(principal, "audit.verify", None, ok=bool(result["ok"]), checked=int(result["checked"]))
    if result["ok"]:
        messages.success(request, f"Audit chain intact: {result['checked']} events verified.")
    else:
        broken = result["first_broken"]
        messages.error(request, f"Audit chain BROKEN at event #{broken['seq']}: {broken['reason']}.")
    return HttpResponseRedirect(reverse("admin:audit_log"))


def audit_log_export(request: HttpRequest) -> HttpResponseBase:
    principal = console_principal(request)
    if not principal_can_audit(principal):
        return denied(request, "export the audit log")
    events = audit_events_filtered(principal, _filter(AuditFilterForm(request.GET or None)))
    _record_export(principal, events.count())
    response = StreamingHttpResponse(_jsonl(events), content_type="application/x-ndjson")
    response["Content-Disposition"] = 'attachment; filename="hkms-audit.jsonl"'
    response["Cache-Control"] = "no-store"
    return response


def _record_export(principal: Principal, count: int) -> None:
    with transaction.atomic():
        audit_record(principal, "audit.export", None, events=count)


def _jsonl(events: object) -> Iterator[str]:
    for row in audit_rows(events):  # type: ignore[arg-type]
        yield json.dumps(row, sort_keys=True, default=str) + "\n"
