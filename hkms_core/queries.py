"""Query helpers that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

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


def insert_row(model: type[M], using: str, **values: Any) -> M:
    """``model.objects.using(using).create(**values)`` as one plain ``INSERT``: the same row.

    Each column's value is what the ORM would write (the model's defaults, ``pre_save``
    for ``auto_now`` columns, ``get_db_prep_save``), without the ORM's insert compilation,
    which costs more than the statement on a hot write.  No ``pre_save``/``post_save``
    signal is sent: only for models no receiver listens to.  Database errors (an
    ``IntegrityError`` on a duplicate key) propagate as from ``create``."""
    connection = connections[using]
    row = model(**values)
    fields = row._meta.concrete_fields
    params = [field.get_db_prep_save(field.pre_save(row, True), connection) for field in fields]
    table = connection.ops.quote_name(row._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", params)  # noqa: S608 (model metadata)
    row._state.adding, row._state.db = False, using
    return row
