from django.apps import AppConfig


class BackupConfig(AppConfig):
    name = "hkms_site.backup"
    label = "backup"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hkms_site.backup.retention import rek_version_retained
        from keys_app.services.root import register_rek_retention

        # A retired REK version that a retained backup needs keeps its material (keys_app.services.root).
        register_rek_retention(rek_version_retained)
