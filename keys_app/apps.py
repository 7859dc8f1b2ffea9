from django.apps import AppConfig


class KeysAppConfig(AppConfig):
    name = "keys_app"
    verbose_name = "Keys (KEK and DEK hierarchy)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hkms_core.access.kinds import register_kind
        from hkms_core.audit.keysource import set_key_source
        from keys_app.models import Key
        from keys_app.services.audit_key import SOURCE

        set_key_source(SOURCE)  # the audit chain's HMAC key is wrapped by the root key: this app holds it
        register_kind("key", Key)  # grant_role --key, list_roles
