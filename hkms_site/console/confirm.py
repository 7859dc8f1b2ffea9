"""One confirmation step for every destructive or availability-changing console action.

The flow is the reveal flow's: the button on a detail page is a link (GET) to
the action's URL, which answers with a confirmation page naming what will stop
working; that page's form POSTs back to the same URL with a **confirmation
token**.  Only a POST carrying a valid token runs the action.  A POST without
one (a stale form, a hand-made request, a script replaying the old button)
gets the confirmation page again and changes nothing.

The token is a signed, timestamped value (``django.core.signing``, salted)
naming the user and the exact action (the request path plus a ``scope`` such
as a grant id), valid for :data:`MAX_AGE` seconds: it proves that this user
saw this page recently, not that the request is cross-site safe (CSRF does
that).  It carries no secret and is useless for any other action or user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from hkms_site.console.views.common import denied, page, run_action

MAX_AGE = 15 * 60
_SALT = "hkms.console.confirm"
FIELD = "confirm_token"


@dataclass(frozen=True)
class Confirmation:
    """What the confirmation page says.

    ``consequences`` are sentences naming what stops working (counts, the
    applications that use a key, the users who lose access); ``facts`` are
    label/value pairs describing the object.
    """

    title: str
    subject: str
    button: str
    cancel_url: str
    consequences: list[str] = field(default_factory=list)
    facts: list[tuple[str, Any]] = field(default_factory=list)
    reversible: str = ""
    hidden: dict[str, str] = field(default_factory=dict)


def _payload(request: HttpRequest, scope: str) -> str:
    return f"{request.user.pk}|{request.path}|{scope}"


def confirm_token(request: HttpRequest, scope: str = "") -> str:
    return signing.dumps(_payload(request, scope), salt=_SALT)


def confirmed(request: HttpRequest, scope: str = "") -> bool:
    """True only for a POST carrying a fresh token issued to this user for this action."""
    if request.method != "POST":
        return False
    token = str(request.POST.get(FIELD) or "")
    if not token:
        return False
    try:
        value = signing.loads(token, salt=_SALT, max_age=MAX_AGE)
    except signing.BadSignature:  # includes SignatureExpired
        return False
    return bool(value == _payload(request, scope))


def confirm_page(request: HttpRequest, confirmation: Confirmation, scope: str = "") -> HttpResponse:
    """The confirmation page (also the answer to an unconfirmed POST: nothing was done)."""
    context = {
        "c": confirmation,
        "token": confirm_token(request, scope),
        "token_field": FIELD,
        "next": str(request.GET.get("next") or request.POST.get("next") or ""),
        "unconfirmed_post": request.method == "POST",
    }
    return page(request, "console/confirm.html", context, title=confirmation.title)


def action_run(
    request: HttpRequest,
    *,
    call: Callable[[], Any],
    success: str,
    fallback: str,
    confirmation: Callable[[], Confirmation] | None = None,
    may_act: Callable[[], bool] = lambda: False,
    refused: str = "do that",
) -> HttpResponse:
    """The one flow of every console action button (keys, secrets, versions).

    ``confirmation`` is given for actions that stop something working: a principal
    who ``may_act`` gets its page until the POST carries the page's token; anyone
    else's POST reaches the service, which refuses it and records the refusal, and
    their GET is a 403 page (``refused`` names what they may not do).  Other actions
    are POST only (405).  The service runs through ``run_action``.
    """
    if confirmation is not None and may_act() and not confirmed(request):
        return confirm_page(request, confirmation())
    if request.method != "POST":
        return denied(request, refused) if confirmation is not None else HttpResponseNotAllowed(["POST"])
    return run_action(request, call, success=success, fallback=fallback)
