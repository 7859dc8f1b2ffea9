"""``/key-manager/v1alpha1/`` routes, in the SDK's path shapes (included from ``hkms_site.urls``)."""

from __future__ import annotations

from django.urls import path, re_path

from hkms_core.api.exceptions import unknown_endpoint
from keys_app.api import views

_KEY = "regions/<str:region>/keys/<str:key_id>"

urlpatterns = [
    path("regions/<str:region>/keys", views.KeysView.as_view(), name="km-keys"),
    path(_KEY, views.KeyView.as_view(), name="km-key"),
    path(f"{_KEY}/public-key", views.PublicKeyView.as_view(), name="km-public-key"),
    path(f"{_KEY}/rotate", views.RotateKeyView.as_view(), name="km-rotate"),
    path(f"{_KEY}/protect", views.ProtectKeyView.as_view(), name="km-protect"),
    path(f"{_KEY}/unprotect", views.UnprotectKeyView.as_view(), name="km-unprotect"),
    path(f"{_KEY}/enable", views.EnableKeyView.as_view(), name="km-enable"),
    path(f"{_KEY}/disable", views.DisableKeyView.as_view(), name="km-disable"),
    path(f"{_KEY}/restore", views.RestoreKeyView.as_view(), name="km-restore"),
    path(f"{_KEY}/generate-data-key", views.GenerateDataKeyView.as_view(), name="km-generate-data-key"),
    path(f"{_KEY}/encrypt", views.EncryptView.as_view(), name="km-encrypt"),
    path(f"{_KEY}/decrypt", views.DecryptView.as_view(), name="km-decrypt"),
    path(f"{_KEY}/sign", views.SignView.as_view(), name="km-sign"),
    path(f"{_KEY}/verify", views.VerifyView.as_view(), name="km-verify"),
    path(f"{_KEY}/import-key-material", views.ImportKeyMaterialView.as_view(), name="km-import-key-material"),
    path(f"{_KEY}/delete-key-material", views.DeleteKeyMaterialView.as_view(), name="km-delete-key-material"),
    path(f"{_KEY}/wrap", views.WrapKeyView.as_view(), name="km-wrap"),
    path(f"{_KEY}/unwrap", views.UnwrapKeyView.as_view(), name="km-unwrap"),
    path("regions/<str:region>/algorithms", views.AlgorithmsView.as_view(), name="km-algorithms"),
    re_path(r"^.*$", unknown_endpoint),
]
