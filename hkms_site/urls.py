from django.contrib import admin
from django.urls import include, path

from hkms_site import views
from hkms_site.api.views import WhoAmIView

urlpatterns = [
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("api/whoami", WhoAmIView.as_view(), name="whoami"),
    path("key-manager/v1alpha1/", include("keys_app.api.urls")),
]
