"""What keys and secrets share: the deletion window and the orders of their lists.

One definition each, used by the Key Manager and Secret Manager services, their APIs
and the console, so the two cannot drift apart.

* :data:`DELETION_DELAY`: a deleted key, secret or version stays restorable this long;
  after it the deletion is final (the expiry and purge commands destroy what is due).
* :data:`ORDERINGS`: the ``order_by`` values the list endpoints accept, as
  ``QuerySet.order_by`` arguments.  Ties are broken by ascending ``id`` in every order,
  so a paginated list is stable (the Secret Manager API's order, which its SDK tests pin).
"""

from __future__ import annotations

from datetime import timedelta

DELETION_DELAY = timedelta(days=7)

ORDERINGS: dict[str, tuple[str, str]] = {
    "name_asc": ("name", "id"),
    "name_desc": ("-name", "id"),
    "created_at_asc": ("created_at", "id"),
    "created_at_desc": ("-created_at", "id"),
    "updated_at_asc": ("updated_at", "id"),
    "updated_at_desc": ("-updated_at", "id"),
}
