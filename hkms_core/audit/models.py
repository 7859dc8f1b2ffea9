"""Audit events, hash-chained (default database), and the audit key (kek database).

Each event stores ``seq`` (1, 2, 3, … with no gaps), the hash of its
predecessor, its ``hash_version`` tag and its hash: an HMAC-SHA256 under a
version of the audit key (tag ``1.<key version>``), or, for events written
before the installation had an audit key or while it was sealed, the legacy
unkeyed SHA-256 (tag ``0``); see :mod:`hkms_core.audit.chain`.  The single
``AuditChainHead`` row holds the last ``seq`` and hash and the audit key version
new events use; appends lock it, so concurrent writers form one chain.
:class:`AuditKey` rows hold the audit key versions wrapped by the root key.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, models, router


class AuditEventManager(models.Manager["AuditEvent"]):
    """``create`` appends with one plain ``INSERT … RETURNING id``.

    Every audited request appends an event, so the append is on the hot path:
    this skips the ORM's insert compilation (and the save signals, which
    nothing listens to for audit rows).  Only ``audit_record`` creates events;
    reads, ``update`` and ``delete`` are the ordinary manager's.
    """

    _sql: dict[str, tuple[str, list[Any]]] = {}

    def create(self, **values: Any) -> AuditEvent:
        event = self.model(**values)
        alias = router.db_for_write(self.model)
        connection = connections[alias]
        sql, fields = self._insert_sql(alias)
        params = [field.get_db_prep_save(getattr(event, field.attname), connection) for field in fields]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            event.pk = cursor.fetchone()[0] if connection.features.can_return_columns_from_insert else cursor.lastrowid
        event._state.adding, event._state.db = False, alias
        return event

    def _insert_sql(self, alias: str) -> tuple[str, list[Any]]:
        if alias not in self._sql:
            connection = connections[alias]
            quote = connection.ops.quote_name
            fields = [f for f in self.model._meta.concrete_fields if not f.primary_key]
            sql = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 (model metadata, not input)
                quote(self.model._meta.db_table),
                ", ".join(quote(str(f.column)) for f in fields),
                ", ".join(["%s"] * len(fields)),
            )
            if connection.features.can_return_columns_from_insert:
                sql += f" RETURNING {quote(str(self.model._meta.pk.column))}"  # type: ignore[union-attr,unused-ignore]
            self._sql[alias] = (sql, fields)
        return self._sql[alias]


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        ALLOWED = "allowed"
        DENIED = "denied"
        FAILED = "failed"

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    api_key = models.CharField(max_length=20, blank=True, default="")
    via = models.CharField(max_length=16, blank=True, default="")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    project_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    source_ip = models.CharField(max_length=64, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    #: How ``hash`` was computed: ``"0"`` legacy SHA-256 (unkeyed), ``"1.<n>"`` HMAC under audit key version n.
    hash_version = models.CharField(max_length=16, default="0")
    hash = models.CharField(max_length=64)

    objects = AuditEventManager()

    class Meta:
        ordering = ["seq"]
        permissions = [("verify_audit_log", "Verify and export the audit log")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.actor} {self.action} {self.object_type}:{self.object_id} {self.outcome}"


class AuditChainHead(models.Model):
    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    #: The audit key version new events are keyed with (0: none yet, events are unkeyed).
    key_version = models.PositiveIntegerField(default=0)
    #: ``{"<version>": "<hex check value>"}`` of every audit key version: the default database's
    #: record of which key wrote the chain, so verification refuses a different key.
    key_checks = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"audit chain head #{self.last_seq}"


class AuditKey(models.Model):
    """One version of the audit key, wrapped by a REK version (kek database).

    ``wrapped`` is the root key provider's wrap with the associated data of a KEK
    version named ``("audit", version)`` (``keys_app.services.audit_key``);
    ``check_value`` is :func:`keys_app.crypto.key_check_value` of the key.
    """

    version = models.PositiveIntegerField(primary_key=True)
    wrapped = models.BinaryField()
    rek_version = models.PositiveIntegerField()
    check_value = models.BinaryField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"audit key v{self.version} (REK v{self.rek_version})"
