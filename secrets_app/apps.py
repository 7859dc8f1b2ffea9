from django.apps import AppConfig


class SecretsAppConfig(AppConfig):
    name = "secrets_app"
    verbose_name = "Secrets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hkms_core.access.kinds import register_kind
        from keys_app.services.exposure import register_key_usage
        from secrets_app.models import Secret
        from secrets_app.services.key_usage import key_named_by_secrets, secrets_under_key

        register_kind("secret", Secret)  # grant_role --secret
        # keys_app's exposure reports and purge ask what the secrets above it still need.
        register_key_usage(secrets_under_key, references=key_named_by_secrets)
