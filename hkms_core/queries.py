"""Query helpers that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.expressions import RawSQL

M = TypeVar("M", bound=Model)


def filter_json_list_contains(qs: QuerySet[M], field: str, values: Iterable[str]) -> QuerySet[M]:
    """Keep the rows whose JSON list ``field`` holds every string of ``values``.

    Exact, case-sensitive matching of whole elements on every engine: PostgreSQL
    uses ``jsonb @>`` (Django's ``contains``); SQLite, which Django's ``contains``
    does not support on JSON fields, an ``EXISTS`` over ``json_each`` with the
    value as a bound parameter (never interpolated into the SQL).
    """
    wanted = [value for value in values if value]
    if not wanted:
        return qs
    if connections[qs.db].features.supports_json_field_contains:
        for value in wanted:
            qs = qs.filter(**{f"{field}__contains": [value]})
        return qs
    meta = qs.model._meta
    quote = connections[qs.db].ops.quote_name
    table = quote(meta.db_table)
    column = quote(str(getattr(meta.get_field(field), "column")))  # noqa: B009 (Field, not a relation)
    pk = quote(str(getattr(meta.pk, "column")))  # noqa: B009
    for value in wanted:
        sql = (
            f"SELECT t.{pk} FROM {table} t, json_each(t.{column}) j "  # noqa: S608 (model metadata)
            "WHERE j.value = %s AND j.type = 'text'"
        )
        qs = qs.filter(pk__in=RawSQL(sql, (value,)))  # noqa: S611 (value bound)
    return qs
