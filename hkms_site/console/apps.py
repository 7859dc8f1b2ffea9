from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "hkms_site.console"
    label = "console"
    verbose_name = "Console"
