import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db(databases=["default", "kek", "dek"])


@pytest.mark.parametrize(
    "name", ["admin:index", "admin:roles", "admin:api_keys", "admin:audit_log", "admin:two_factor"]
)
def test_superuser_pages_render(as_user, name):
    response = as_user("admin").get(reverse(name))
    assert response.status_code == 200, response.content[:2000]
