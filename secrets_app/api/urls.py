from django.urls import path, re_path

from hkms_core.api.exceptions import unknown_endpoint
from secrets_app.api import views

R = "secret-manager/v1beta1/regions/<str:region>"
S = f"{R}/secrets/<str:secret_id>"
V = f"{S}/versions/<str:revision>"

urlpatterns = [
    path(f"{R}/secrets", views.SecretsView.as_view()),
    path(f"{R}/secrets/browse", views.BrowseSecretsView.as_view()),
    path(f"{R}/secrets-by-path/versions/<str:revision>/access", views.AccessSecretVersionByPathView.as_view()),
    path(f"{R}/tags", views.TagsView.as_view()),
    path(f"{R}/secret-types", views.SecretTypesView.as_view()),
    path(S, views.SecretView.as_view()),
    path(f"{S}/protect", views.ProtectSecretView.as_view()),
    path(f"{S}/unprotect", views.UnprotectSecretView.as_view()),
    path(f"{S}/restore", views.RestoreSecretView.as_view()),
    path(f"{S}/add-owner", views.AddSecretOwnerView.as_view()),
    path(f"{S}/versions", views.SecretVersionsView.as_view()),
    path(V, views.SecretVersionView.as_view()),
    path(f"{V}/access", views.AccessSecretVersionView.as_view()),
    path(f"{V}/enable", views.EnableSecretVersionView.as_view()),
    path(f"{V}/disable", views.DisableSecretVersionView.as_view()),
    path(f"{V}/restore", views.RestoreSecretVersionView.as_view()),
    # Anything else under the API's prefix: Scaleway's JSON 404, never Django's HTML page.
    re_path(r"^secret-manager/", unknown_endpoint),
]
