"""Naming a key for a secret takes the key-use role on it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.errors import InvalidArgument
from keys_app.services.keys.metadata import key_create
from secrets_app.services.secrets import secret_create

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


def test_secret_writer_needs_key_user_to_name_a_key(project):
    system = Principal.for_command()
    key = key_create(principal=system, project_id=project.id, name="customer")
    writer = get_user_model().objects.create_user("writer")
    role_grant(principal=system, user=writer, role="secret_writer", obj=project)
    me = Principal(user=writer)
    secret_create(principal=me, project_id=project.id, name="uses-default")  # the default key needs no role
    with pytest.raises(InvalidArgument):  # a key it may not see: refused like a key that does not exist
        secret_create(principal=me, project_id=project.id, name="named", key_id=key.id)
    role_grant(principal=system, user=writer, role="key_user", obj=key)
    secret = secret_create(principal=Principal(user=writer), project_id=project.id, name="named", key_id=key.id)
    assert secret.key_id == key.id
