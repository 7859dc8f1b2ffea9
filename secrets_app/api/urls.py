from django.urls import path, re_path

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
    path(f"{S}/protect", views.SecretActionView.as_view(action_name="protect")),
    path(f"{S}/unprotect", views.SecretActionView.as_view(action_name="unprotect")),
    path(f"{S}/restore", views.SecretActionView.as_view(action_name="restore")),
    path(f"{S}/add-owner", views.AddSecretOwnerView.as_view()),
    path(f"{S}/versions", views.SecretVersionsView.as_view()),
    path(V, views.SecretVersionView.as_view()),
    path(f"{V}/access", views.AccessSecretVersionView.as_view()),
    path(f"{V}/enable", views.SecretVersionActionView.as_view(action_name="enable")),
    path(f"{V}/disable", views.SecretVersionActionView.as_view(action_name="disable")),
    path(f"{V}/restore", views.SecretVersionActionView.as_view(action_name="restore")),
    # Anything else under the API's prefix: Scaleway's JSON 404, never Django's HTML page.
    re_path(r"^secret-manager/", views.unknown_endpoint),
]
