from django.apps import AppConfig


class BackupConfig(AppConfig):
    name = "hkms_site.backup"
    label = "backup"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"
