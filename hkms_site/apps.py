from django.apps import AppConfig


class HkmsSiteConfig(AppConfig):
    """The roof: registers the project's system checks (``hkms_site.checks``)."""

    name = "hkms_site"
    verbose_name = "HKMS site"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hkms_site import checks  # noqa: F401  (registers system checks)
