"""``django.contrib.admin`` whose default site is the console (:class:`ConsoleSite`)."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "hkms_site.console.site.ConsoleSite"
