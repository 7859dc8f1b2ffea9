from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "hkms_core.access"
    label = "access"
    verbose_name = "Access control"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Changes to users, API keys and object permissions, from any code path (the console,
        the admin, guardian's shortcuts), invalidate the cached principals of every process."""
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save
        from guardian.models import UserObjectPermission

        from hkms_core.access.generation import bump_on_change
        from hkms_core.access.models import ApiKey

        for model in (get_user_model(), ApiKey, UserObjectPermission):
            post_save.connect(bump_on_change, sender=model, dispatch_uid=f"hkms-access-{model._meta.label}-save")
            post_delete.connect(bump_on_change, sender=model, dispatch_uid=f"hkms-access-{model._meta.label}-delete")
