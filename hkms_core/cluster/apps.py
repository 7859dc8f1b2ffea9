from django.apps import AppConfig


class ClusterConfig(AppConfig):
    name = "hkms_core.cluster"
    label = "cluster"
    verbose_name = "Cluster state"
    default_auto_field = "django.db.models.BigAutoField"
