from __future__ import annotations

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "hkms_site.observability"
    label = "hkms_observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from hkms_core.access.cache import PrincipalCache
        from hkms_core.metrics import set_audit_observer
        from hkms_site.observability.metrics import audit_appended, cache_observer, count_database_errors
        from keys_app.cache import KeyCache

        connection_created.connect(count_database_errors, dispatch_uid="hkms-db-errors")
        set_audit_observer(audit_appended)  # the audit log (foundation) reports, this app counts
        KeyCache.observer = staticmethod(cache_observer("key"))
        PrincipalCache.observer = staticmethod(cache_observer("principal"))
