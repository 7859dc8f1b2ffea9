from django.apps import AppConfig


class KeysAppConfig(AppConfig):
    name = "keys_app"
    verbose_name = "Keys (KEK and DEK hierarchy)"
    default_auto_field = "django.db.models.BigAutoField"
