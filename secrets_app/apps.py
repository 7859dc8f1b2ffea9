from django.apps import AppConfig


class SecretsAppConfig(AppConfig):
    name = "secrets_app"
    verbose_name = "Secrets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hkms_core.access.kinds import register_kind
        from secrets_app.models import Secret

        register_kind("secret", Secret)  # grant_role --secret
