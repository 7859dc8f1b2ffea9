from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "hkms_core.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
    default_auto_field = "django.db.models.BigAutoField"
