from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from hkms_site import views
from hkms_site.api.docs import ApiDocsView
from hkms_site.api.views import SealStatusView, SealView, UnsealView, WhoAmIView
from hkms_site.observability.views import metrics

urlpatterns = [
    path("health", views.health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("health/ready", views.health, name="health-ready"),
    path("health/live", views.health_live, name="health-live"),
    # The project model moved to hkms_core.tenancy (issue 13): old model-admin links still work.
    re_path(
        r"^admin/secrets_app/project/(?P<rest>.*)$",
        RedirectView.as_view(url="/admin/tenancy/project/%(rest)s", permanent=True, query_string=True),
    ),
    path("admin/", admin.site.urls),
    path("api/whoami", WhoAmIView.as_view(), name="whoami"),
    path("api/seal-status", SealStatusView.as_view(), name="seal-status"),
    path("api/unseal", UnsealView.as_view(), name="unseal"),
    path("api/seal", SealView.as_view(), name="seal"),
    path("key-manager/v1alpha1/", include("keys_app.api.urls")),
    path("", include("secrets_app.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[AllowAny]), name="schema"),
    path("api/docs/", ApiDocsView.as_view(), name="api-docs"),
]

# A database outage answers a plain 503 page (hkms_core.outage), anything else Django's 500 page.
handler500 = "hkms_core.outage.server_error"
