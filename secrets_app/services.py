"""Secret services: every function takes the acting principal, checks it and audits.

(Transitional: re-exports the storage layer until the guarded services land.)
"""

from secrets_app.storage import *  # noqa: F403
from secrets_app.storage import (  # noqa: F401
    payload_open,
    payload_seal,
    project_create,
    secret_create,
    secret_version_create,
    secret_version_destroy,
    secret_version_payload,
    secret_version_set_status,
)
