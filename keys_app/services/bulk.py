"""Bulk writes for the rotations: one ``executemany`` per batch, and fewer SQLite checkpoints.

The ORM's per-row ``update()`` costs more than the cryptography it surrounds; these
helpers keep batch rotation fast on SQLite and PostgreSQL alike.  They change no
ordering rule: each caller commits its batches in the order its module docstring
states (``keys_app.services.rotation``, ``secrets_app.services.dek_rotation``), and a
compare-and-set ``WHERE`` clause is the caller's to give.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import connections, models

# Pages SQLite's WAL may hold before a bulk rotation checkpoints it (SQLite's default: 1,000).
# Batches update rows spread over the whole table (ids are random), so consecutive batches
# rewrite many of the same index pages; checkpointing every 1,000 pages copied each of them
# back to the database file once per batch.  A larger WAL copies each page once per 20,000
# pages written: about 30 % less time for a DEK rotation at 100k versions (bench/).
BULK_WAL_AUTOCHECKPOINT = 20_000


@contextmanager
def sqlite_bulk_writes(*aliases: str) -> Iterator[None]:
    """Checkpoint SQLite's WAL less often during a bulk rotation, then once at the end.

    Only the connections of this thread on SQLite aliases are changed (PostgreSQL is
    left alone) and the default is restored afterwards, also on an error.  Durability
    and crash safety are unchanged: a committed transaction is in the WAL either way,
    and a checkpoint only copies it into the database file (the WAL may grow to about
    80 MiB meanwhile).  Inside an outer transaction the final checkpoint is left to
    the next commit.
    """
    changed = [connections[a] for a in aliases if connections[a].vendor == "sqlite"]
    for connection in changed:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint = {BULK_WAL_AUTOCHECKPOINT}")
    try:
        yield
    finally:
        for connection in changed:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA wal_autocheckpoint = 1000")
                if not connection.in_atomic_block:  # SQLite cannot checkpoint inside a transaction
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


def bulk_update_rows(
    model: type[models.Model],
    using: str,
    set_fields: Sequence[str],
    where_fields: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    """``UPDATE … SET set_fields WHERE where_fields`` for many rows in one executemany.

    The ORM's per-row ``update()`` costs more than the cryptography it
    surrounds; this keeps batch rotation fast on SQLite and PostgreSQL alike.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    fields: list[Any] = [model._meta.get_field(name) for name in (*set_fields, *where_fields)]
    sql = "UPDATE {} SET {} WHERE {}".format(  # noqa: S608  (identifiers from model metadata)
        quote(model._meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in fields[: len(set_fields)]),
        " AND ".join(f"{quote(f.column)} = %s" for f in fields[len(set_fields) :]),
    )
    params = [
        [field.get_db_prep_value(value, connection) for field, value in zip(fields, row, strict=True)] for row in rows
    ]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def bulk_insert_rows(
    model: type[models.Model], using: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``INSERT`` many rows in one executemany (values prepared like the ORM would)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    fields: list[Any] = [model._meta.get_field(name) for name in columns]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608  (identifiers from model metadata)
        quote(model._meta.db_table), ", ".join(quote(f.column) for f in fields), ", ".join(["%s"] * len(fields))
    )
    params = [[f.get_db_prep_save(v, connection) for f, v in zip(fields, row, strict=True)] for row in rows]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)
