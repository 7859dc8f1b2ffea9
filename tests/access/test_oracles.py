"""No existence oracles, refusals audited, payloads only for an API key (THREAT_MODEL.md).

Oracles: for a caller who may not see an object, the answer to a request naming
it is compared byte for byte with the answer to the *same request* once the object
is gone (status, body), and the work done is compared too (queries per database,
denied audit events): existing-but-hidden and missing must be indistinguishable.

Cookie: the console's session cookie authenticates nothing that reads, consumes
or uses secret material through the REST API (a cross-site top-level GET carries
the ``Lax`` cookie).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from hkms_core.access.apikeys import api_key_create
from hkms_core.access.principal import Principal
from hkms_core.access.services import role_grant
from hkms_core.audit.models import AuditEvent
from keys_app.models import Key
from keys_app.services.keys.metadata import key_create
from keys_app.services.keys.use import key_encrypt
from keys_app.services.projects import project_create
from secrets_app.models import Secret
from secrets_app.services.secrets import EphemeralPolicy, secret_create
from secrets_app.services.versions import secret_version_create

pytestmark = [pytest.mark.usefixtures("clear_throttles"), pytest.mark.django_db(databases=["default", "kek", "dek"])]
SM = "/secret-manager/v1beta1/regions"
KM = "/key-manager/v1alpha1/regions"
SYSTEM = Principal.for_command()


def _client(project: Any, role: str, name: str) -> APIClient:
    user = get_user_model().objects.create_user(name)
    role_grant(principal=SYSTEM, user=user, role=role, obj=project)
    issued = api_key_create(principal=SYSTEM, user=user, project=project)
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=issued.secret_key)
    return client


@pytest.fixture
def world(hierarchy):
    victim = project_create(principal=SYSTEM, name="victim")
    mine = project_create(principal=SYSTEM, name="mine")
    secret = secret_create(principal=SYSTEM, project_id=victim.id, name="db-password", path="/apps/web")
    secret_version_create(principal=SYSTEM, secret_id=secret.id, data=b"s3cret")
    key = key_create(principal=SYSTEM, project_id=victim.id, name="victim-key", unprotected=True)
    ciphertext = key_encrypt(principal=SYSTEM, key_id=key.id, plaintext=b"x").data
    return {
        "victim": victim,
        "mine": mine,
        "secret": secret,
        "key": key,
        "ciphertext": ciphertext,
        # A project_admin elsewhere: sees nothing of the victim's project.
        "stranger": _client(mine, "project_admin", "stranger"),
        # The victim's own project_admin, for other-region requests.
        "owner": _client(victim, "project_admin", "owner"),
    }


def _get(path: str) -> Callable[[APIClient], Any]:
    return lambda client: client.get(path)


def _post(path: str, body: dict[str, Any]) -> Callable[[APIClient], Any]:
    return lambda client: client.post(path, data=json.dumps(body), content_type="application/json")


def _forget_secret(w: dict[str, Any]) -> None:
    Secret.objects.filter(id=w["secret"].id).delete()


def _forget_key(w: dict[str, Any]) -> None:
    Key.objects.filter(id=w["key"].id).delete()


#: name -> (who asks, the request, how the object then disappears)
ORACLES: dict[str, tuple[str, Callable[[dict[str, Any]], Callable[[APIClient], Any]], Callable[..., None]]] = {
    "get_secret_upper_case_id": (
        "stranger",
        lambda w: _get(f"{SM}/fr-par/secrets/{str(w['secret'].id).upper()}"),
        _forget_secret,
    ),
    "access_version_upper_case_id": (
        "stranger",
        lambda w: _get(f"{SM}/fr-par/secrets/{str(w['secret'].id).upper()}/versions/1/access"),
        _forget_secret,
    ),
    "access_latest_enabled": (
        "stranger",
        lambda w: _get(f"{SM}/fr-par/secrets/{w['secret'].id}/versions/latest_enabled/access"),
        _forget_secret,
    ),
    "update_secret": ("stranger", lambda w: _post(f"{SM}/fr-par/secrets/{w['secret'].id}/protect", {}), _forget_secret),
    "access_by_path_other_project": (
        "stranger",
        lambda w: _get(
            f"{SM}/fr-par/secrets-by-path/versions/latest/access?project_id={w['victim'].id}"
            "&secret_path=/apps/web&secret_name=db-password"
        ),
        _forget_secret,
    ),
    "access_by_path_other_region": (
        "owner",
        lambda w: _get(
            f"{SM}/nl-ams/secrets-by-path/versions/latest/access?project_id={w['victim'].id}"
            "&secret_path=/apps/web&secret_name=db-password"
        ),
        _forget_secret,
    ),
    "get_secret_other_region": ("owner", lambda w: _get(f"{SM}/nl-ams/secrets/{w['secret'].id}"), _forget_secret),
    "get_key_upper_case_id": ("stranger", lambda w: _get(f"{KM}/fr-par/keys/{str(w['key'].id).upper()}"), _forget_key),
    "decrypt_hidden_key": (
        "stranger",
        lambda w: _post(
            f"{KM}/fr-par/keys/{w['key'].id}/decrypt", {"ciphertext": base64.b64encode(w["ciphertext"]).decode()}
        ),
        _forget_key,
    ),
    "get_key_other_region": ("owner", lambda w: _get(f"{KM}/nl-ams/keys/{w['key'].id}"), _forget_key),
}


def _ask(client: APIClient, request: Callable[[APIClient], Any]) -> tuple[int, bytes, dict[str, int], int]:
    denied = AuditEvent.objects.filter(outcome="denied").count()
    with (
        CaptureQueriesContext(connections["default"]) as default,
        CaptureQueriesContext(connections["kek"]) as kek,
        CaptureQueriesContext(connections["dek"]) as dek,
    ):
        response = request(client)
    queries = {"default": len(default), "kek": len(kek), "dek": len(dek)}
    return response.status_code, response.content, queries, AuditEvent.objects.filter(outcome="denied").count() - denied


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_hidden_and_missing_objects_answer_alike(world, name):
    who, build, forget = ORACLES[name]
    client, request = world[who], build(world)
    request(client)  # warm per-process caches (principal, content types) for both runs alike
    hidden = _ask(client, request)
    forget(world)
    missing = _ask(client, request)
    assert hidden[0] == 404, hidden[1]
    assert hidden[1] == missing[1], f"{name}: the body tells that the object exists"
    assert hidden[0] == missing[0]
    assert hidden[2]["kek"] == hidden[2]["dek"] == 0, f"{name}: key databases touched for a refused request"
    assert abs(hidden[2]["default"] - missing[2]["default"]) <= 1, f"{name}: work differs {hidden[2]} {missing[2]}"
    assert hidden[3] == missing[3] == 1, f"{name}: refusals must each write one denied audit event"


def test_by_path_answer_names_the_path_never_an_id(world):
    response = world["stranger"].get(
        f"{SM}/fr-par/secrets-by-path/versions/latest/access?project_id={world['victim'].id}"
        "&secret_path=/apps/web&secret_name=db-password"
    )
    assert response.status_code == 404
    assert str(world["secret"].id) not in response.content.decode()
    assert response.json()["message"] == "secret /apps/web/db-password not found"


@pytest.mark.parametrize(
    "path",
    [
        "{SM}/nl-ams/secrets/{secret}",
        "{SM}/nl-ams/secrets-by-path/versions/latest/access?project_id={victim}&secret_path=/apps/web"
        "&secret_name=db-password",
        "{KM}/nl-ams/keys/{key}",
    ],
)
def test_refusals_about_a_real_object_are_audited_on_it(world, path):
    """Another region's path to a real object: the event names the object and its project,
    so the project's auditors see the attempt."""
    url = path.format(SM=SM, KM=KM, secret=world["secret"].id, key=world["key"].id, victim=world["victim"].id)
    assert world["owner"].get(url).status_code == 404
    event = AuditEvent.objects.filter(outcome="denied").order_by("-seq").first()
    assert event is not None
    assert event.object_id in {str(world["secret"].id), str(world["key"].id)}
    assert event.project_id == str(world["victim"].id)


def test_unknown_id_refusals_are_audited(world):
    missing = uuid.uuid4()
    assert world["stranger"].get(f"{SM}/fr-par/secrets/{missing}").status_code == 404
    event = AuditEvent.objects.filter(outcome="denied").order_by("-seq").first()
    assert event is not None and event.object_id == str(missing) and event.action == "secret.get"


# --- the console session cookie on the REST API ------------------------------------------------------
@pytest.fixture
def cookie_client(world):
    """A browser logged in to the console as the victim project's admin: cookie only, no token."""
    user = get_user_model().objects.create_user("browser")
    role_grant(principal=SYSTEM, user=user, role="project_admin", obj=world["victim"])
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _once_secret(world: dict[str, Any]) -> Any:
    secret = secret_create(
        principal=SYSTEM,
        project_id=world["victim"].id,
        name="once",
        ephemeral_policy=EphemeralPolicy(expires_once_accessed=True, action="disable"),
    )
    secret_version_create(principal=SYSTEM, secret_id=secret.id, data=b"read-me-once")
    return secret


def test_a_session_cookie_does_not_read_or_consume_a_payload(world, cookie_client):
    secret = _once_secret(world)
    for url in (
        f"{SM}/fr-par/secrets/{secret.id}/versions/1/access",
        f"{SM}/fr-par/secrets-by-path/versions/latest/access?project_id={world['victim'].id}&secret_path=/"
        "&secret_name=once",
    ):
        response = cookie_client.get(url)
        assert response.status_code == 401, response.content
        assert response.json()["type"] == "denied_authentication"
        assert b"read-me-once" not in response.content
    assert not secret.versions.filter(accessed_at__isnull=False).exists(), "the version was consumed"
    # Metadata stays readable with the cookie (nothing changes for the rest of the API).
    assert cookie_client.get(f"{SM}/fr-par/secrets/{secret.id}").status_code == 200
    # And the same read with an API key works.
    ok = world["owner"].get(f"{SM}/fr-par/secrets/{secret.id}/versions/1/access")
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("decrypt", lambda w: {"ciphertext": base64.b64encode(w["ciphertext"]).decode()}),
        ("encrypt", lambda w: {"plaintext": base64.b64encode(b"x").decode()}),
        ("generate-data-key", lambda w: {}),
    ],
)
def test_a_session_cookie_does_not_use_keys(world, cookie_client, action, body):
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    token = _get_new_csrf_string()
    cookie_client.cookies["csrftoken"] = token
    response = cookie_client.post(
        f"{KM}/fr-par/keys/{world['key'].id}/{action}",
        data=json.dumps(body(world)),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=_mask_cipher_secret(token),
    )
    assert response.status_code == 401, response.content
    assert response.json()["type"] == "denied_authentication"


def test_revoking_someone_elses_api_key_answers_like_a_missing_one_and_is_audited(world):
    from hkms_core.access.apikeys import api_key_create, api_key_revoke
    from hkms_core.errors import ObjectNotFound

    users = get_user_model().objects
    alice, mallory = users.create_user("alice"), users.create_user("mallory")
    issued = api_key_create(principal=SYSTEM, user=alice, project=world["victim"])
    answers = []
    for access_key in (issued.api_key.access_key, "SCWNOSUCHKEY0000000"):
        with pytest.raises(ObjectNotFound) as refused:
            api_key_revoke(principal=Principal(user=mallory), access_key=access_key)
        answers.append(refused.value.as_scaleway() | {"resource_id": "", "message": ""})
        event = AuditEvent.objects.filter(outcome="denied").order_by("-seq").first()
        assert event is not None and event.action == "api_key.revoke" and event.object_id == access_key
    assert answers[0] == answers[1]
