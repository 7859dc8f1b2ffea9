"""HKMS settings, read from the environment (see README "Configuration").

Every knob has a development default so that ``make run`` works on a fresh
machine; ``manage.py check`` (system checks ``hkms.E0xx``/``hkms.W0xx`` in
``hkms_site.checks``) reports settings that are unsafe or inconsistent.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from hkms_core.env import (
    cache_from_url,
    env_bool,
    env_int,
    env_list,
    env_path,
    env_secret,
    env_str,
    parse_database_url,
    parse_libpq_options,
)

BASE_DIR = Path(__file__).resolve().parent.parent
HKMS_DATA_DIR = env_path("HKMS_DATA_DIR", BASE_DIR / "var")
HKMS_PRODUCTION = env_bool("HKMS_PRODUCTION", False)


def _development_secret_key() -> str:
    """A per-installation key generated into the data dir (0600) on first use."""
    path = HKMS_DATA_DIR / "django_secret_key"
    if not path.exists():
        HKMS_DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


_secret_key = env_secret("DJANGO_SECRET_KEY")
if not _secret_key:
    if HKMS_PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required when HKMS_PRODUCTION=1")
    _secret_key = _development_secret_key()
SECRET_KEY = _secret_key
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "hkms_site.console.admin_config.ConsoleAdminConfig",  # django.contrib.admin with the console as its site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "hkms_site.apps.HkmsSiteConfig",
    "hkms_core.tenancy",  # the project (tenant), below access, keys and secrets
    "hkms_core.access",
    "hkms_core.audit",
    "hkms_site.backup",
    "hkms_core.cluster",
    "keys_app",
    "secrets_app",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "hkms_site.console",
]

MIDDLEWARE = [
    # First: an outage answer (503) drops this thread's database connections and re-runs the
    # request once where that is safe (hkms_core.outage).
    "hkms_core.outage.DatabaseOutageMiddleware",
    # A seal on any node seals this one within HKMS_SEAL_CHECK_SECONDS (shamir provider only).
    "keys_app.cluster_seal.ClusterSealMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "hkms_site.console.middleware.SecurityHeadersMiddleware",
    # Plain payload reads end here (secrets_app/api/hot.py); everything else goes on.
    "secrets_app.api.hot.HotPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "hkms_site.console.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hkms_site.urls"
WSGI_APPLICATION = "hkms_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- databases ------------------------------------------------------------------------
# Three aliases: "default" (projects, secrets, key metadata, auth, audit), "kek" (REK
# metadata, wrapped KEK versions, rotation jobs) and "dek" (wrapped DEKs). See routers.py.
DATABASE_ROUTERS = ["hkms_core.routers.HierarchyRouter"]
_DB_FILES = {"default": "default.sqlite3", "kek": "kek.sqlite3", "dek": "dek.sqlite3"}
_DB_URL_VARS = {"default": "DATABASE_URL", "kek": "KEK_DATABASE_URL", "dek": "DEK_DATABASE_URL"}
_PG_NAMES = {"default": "hkms", "kek": "hkms_kek", "dek": "hkms_dek"}
# Seconds a database connection is kept for the next requests of its thread (gunicorn gthread:
# one connection per thread and alias); 0 opens and closes one per request.  Persistent SQLite
# connections save ~0.8 ms a request (Django's per-connection set-up and the PRAGMAs below).
_CONN_MAX_AGE = env_int("HKMS_DB_CONN_MAX_AGE", 60, minimum=0)


def _sqlite(alias: str) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(HKMS_DATA_DIR / _DB_FILES[alias]),
        "CONN_MAX_AGE": _CONN_MAX_AGE,
        "OPTIONS": {
            # Writers take the lock up front (no upgrade deadlocks); WAL lets readers
            # go on while a rotation writes; wait rather than fail when locked.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536",
        },
        # File-backed test databases (one set per test process): in-memory shared-cache
        # SQLite locks whole tables and has no busy timeout, unlike the real thing.
        "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"hkms-test-{os.getpid()}-{alias}.sqlite3")},
    }


# Ping a persistent connection before its first use in each request and replace it if the
# server went away (a restart, a failover): on by default for PostgreSQL whichever way it is
# configured; SQLite files need no ping unless HKMS_DB_CONN_HEALTH_CHECKS says so.
_CONN_HEALTH_CHECKS = os.environ.get("HKMS_DB_CONN_HEALTH_CHECKS")
# libpq connection parameters for every PostgreSQL alias ("key=value key=value"), under the
# URL's own query parameters.  connect_timeout bounds how long a request waits for a host
# that does not answer (a dead primary behind a firewall) before it answers 503.
_PG_OPTIONS = {"connect_timeout": "5", **parse_libpq_options("HKMS_DB_OPTIONS", env_str("HKMS_DB_OPTIONS"))}


def _postgres_from_pg_env(alias: str) -> dict[str, Any]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": env_str(f"HKMS_PG_{alias.upper()}_NAME", _PG_NAMES[alias]),
        "USER": env_str("PGUSER", "postgres"),
        "PASSWORD": env_str("PGPASSWORD", ""),
        "HOST": env_str("PGHOST", "127.0.0.1"),
        "PORT": env_str("PGPORT", "5432"),
        "CONN_MAX_AGE": _CONN_MAX_AGE,
    }


def _database(alias: str) -> dict[str, Any]:
    url = env_str(_DB_URL_VARS[alias])
    if url:
        config = parse_database_url(_DB_URL_VARS[alias], url, conn_max_age=_CONN_MAX_AGE)
        if config["ENGINE"] == "django.db.backends.sqlite3":
            config["OPTIONS"] = _sqlite(alias)["OPTIONS"]
    elif env_bool("HKMS_TEST_POSTGRES", False):
        config = _postgres_from_pg_env(alias)
    else:
        config = _sqlite(alias)
    postgres = config["ENGINE"] == "django.db.backends.postgresql"
    if postgres:
        config["OPTIONS"] = {**_PG_OPTIONS, **config.get("OPTIONS", {})}
    if _CONN_HEALTH_CHECKS is not None:
        config["CONN_HEALTH_CHECKS"] = env_bool("HKMS_DB_CONN_HEALTH_CHECKS")
    elif postgres:
        config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES = {alias: _database(alias) for alias in ("default", "kek", "dek")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- root key provider ----------------------------------------------------------------
HKMS_ROOT_KEY_PROVIDER = env_str("HKMS_ROOT_KEY_PROVIDER", "file")
HKMS_ROOT_KEY_OPTIONS: dict[str, dict[str, Any]] = {
    "file": {"path": str(env_path("HKMS_ROOT_KEY_FILE", HKMS_DATA_DIR / "root_keyring.json"))},
    # REK in memory only, k-of-n custodian shares (README, "Root key custody").  Server workers and
    # commands reach the seal keeper (`manage.py seal_keeper`) on this socket; set
    # HKMS_SHAMIR_KEEPER_SOCKET to an empty value to hold the key in-process (single process only).
    "shamir": {
        "keeper_socket": (
            os.environ["HKMS_SHAMIR_KEEPER_SOCKET"]
            if "HKMS_SHAMIR_KEEPER_SOCKET" in os.environ
            else str(HKMS_DATA_DIR / "run" / "seal-keeper.sock")
        ),
        "shares": env_int("HKMS_SHAMIR_SHARES", 5, minimum=2),
        "threshold": env_int("HKMS_SHAMIR_THRESHOLD", 3, minimum=2),
    },
    # REK as a non-extractable AES-256 key in an HSM; the PIN from HKMS_PKCS11_PIN or a file
    # named by HKMS_PKCS11_PIN_FILE (read when the token is first used).
    "pkcs11": {
        "module": env_str("HKMS_PKCS11_MODULE"),
        "token_label": env_str("HKMS_PKCS11_TOKEN_LABEL", "hkms"),
        "key_label": env_str("HKMS_PKCS11_KEY_LABEL", "hkms-rek"),
        "pin": env_str("HKMS_PKCS11_PIN"),
        "pin_file": env_str("HKMS_PKCS11_PIN_FILE"),
    },
}

# Seconds between two reads of the cluster seal epoch per process (keys_app.cluster_seal): the
# bound on how long a node keeps serving after `seal` ran on another node; 0 reads it every request.
HKMS_SEAL_CHECK_SECONDS = env_int("HKMS_SEAL_CHECK_SECONDS", 1, minimum=0)

# --- unwrapped-key cache (process memory only) ----------------------------------------
HKMS_KEY_CACHE_SIZE = env_int("HKMS_KEY_CACHE_SIZE", 10_000, minimum=0)
HKMS_KEY_CACHE_SECONDS = env_int("HKMS_KEY_CACHE_SECONDS", 300, minimum=0)

# --- auth, i18n, static ---------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user with permissions
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = HKMS_DATA_DIR / "static"
# WhiteNoise serves static files from gunicorn; finders too, so a server started
# without collectstatic (tests, development) still has the admin's CSS.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Plain payload reads served by secrets_app/api/hot.py (0: every read takes the DRF view).
HKMS_HOT_PATH = env_bool("HKMS_HOT_PATH", True)

# Regions this server answers for in /…/regions/{region}/ paths.
HKMS_REGIONS = env_list("HKMS_REGIONS", ["fr-par", "nl-ams", "pl-waw"])

# Django's cache holds the API throttles' counters (hkms_core.api.throttling), failed X-Auth-Token
# attempts per address and, in its "login" alias, failed console logins.  HKMS_CACHE_URL picks it:
# * unset or locmem:// -- process memory (zero configuration): every process counts on its own,
#   so a limit holds per gunicorn worker, not per node or cluster;
# * redis://host:6379/0 (rediss:// for TLS; several URLs separated by commas) -- Django's
#   RedisCache: one count across workers and nodes, atomic increments;
# * db:// -- Django's DatabaseCache in the default database (manage.py createcachetable): shared
#   too, with increments that are not atomic (a burst may pass a limit by a few requests).
# HKMS_CACHE_KEY_PREFIX (default "hkms") separates installations sharing one Redis.
_CACHE_URL = env_str("HKMS_CACHE_URL")
_CACHE_PREFIX = env_str("HKMS_CACHE_KEY_PREFIX", "hkms")
CACHES = {"default": cache_from_url("HKMS_CACHE_URL", _CACHE_URL, key_prefix=_CACHE_PREFIX)}
HKMS_SHARED_CACHE = CACHES["default"]["BACKEND"] != "django.core.cache.backends.locmem.LocMemCache"

# Reverse proxies whose X-Forwarded-For is believed (CIDRs, comma-separated; empty: none, the
# client address is REMOTE_ADDR).  The client is the rightmost address not in this list.
HKMS_TRUSTED_PROXIES = env_list("HKMS_TRUSTED_PROXIES", [])
for _cidr in HKMS_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"HKMS_TRUSTED_PROXIES: {_exc}") from None
# Failed X-Auth-Token attempts allowed per client address per minute; further *failures* get 429,
# valid keys from that address are still served.
HKMS_AUTH_FAILURES_PER_MINUTE = env_int("HKMS_AUTH_FAILURES_PER_MINUTE", 30, minimum=1)

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["hkms_core.api.parsers.JSONParser"],  # nesting limit: hkms_core.safejson
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hkms_core.api.authentication.ApiKeyAuthentication",
        "hkms_core.api.authentication.ConsoleSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "hkms_core.api.throttling.ClientIpThrottle",
        "hkms_core.api.throttling.PrincipalThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("HKMS_THROTTLE_ANON", "60/minute"),
        "user": env_str("HKMS_THROTTLE_USER", "100000/minute"),
    },
    "EXCEPTION_HANDLER": "hkms_core.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

# --- observability: logs, request ids, /metrics (hkms_site.observability, docs/observability.md) ---
from hkms_site.observability.logs import logging_config  # noqa: E402  (no Django import in it)

HKMS_LOG_FORMAT = env_str("HKMS_LOG_FORMAT", "text")
if HKMS_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"HKMS_LOG_FORMAT must be text or json, not {HKMS_LOG_FORMAT!r}")
LOGGING: dict[str, Any] = logging_config(fmt=HKMS_LOG_FORMAT, level=env_str("HKMS_LOG_LEVEL", "INFO"))
#: Bearer token of /metrics; unset = /metrics is disabled (404).
HKMS_METRICS_TOKEN = env_secret("HKMS_METRICS_TOKEN") or ""
INSTALLED_APPS.append("hkms_site.observability.apps.ObservabilityConfig")
MIDDLEWARE.insert(0, "hkms_site.observability.middleware.ObservabilityMiddleware")  # outermost: sees every answer

# --- browser console: sessions, cookies, security headers, 2FA -----------------------
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"
SESSION_COOKIE_AGE = env_int("HKMS_SESSION_SECONDS", 8 * 3600, minimum=60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # the console has no script that needs to read it
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("HKMS_SECURE_COOKIES", HKMS_PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("HKMS_SSL_REDIRECT", HKMS_PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^health(/live|/ready)?$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env_int("HKMS_HSTS_SECONDS", 31_536_000 if HKMS_PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HKMS_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("HKMS_HSTS_PRELOAD", HKMS_PRODUCTION)
if env_bool("HKMS_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
#: Content-Security-Policy of every response (hkms_site.console.middleware): no inline script.
HKMS_CSP = env_str(
    "HKMS_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
#: Superusers must log in with a TOTP code (django-otp); others may enrol.
HKMS_REQUIRE_2FA = env_bool("HKMS_REQUIRE_2FA", False)
OTP_TOTP_ISSUER = env_str("HKMS_TOTP_ISSUER", "HKMS")
#: Failed console logins allowed per (username, client address) before a lockout.
HKMS_LOGIN_FAILURES_LIMIT = env_int("HKMS_LOGIN_FAILURES_LIMIT", 5, minimum=1)
HKMS_LOGIN_LOCKOUT_SECONDS = env_int("HKMS_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# The login throttle must be shared by every gunicorn worker: the shared cache when there is one
# (every node), else a file cache in the data dir (every worker of this node).
if HKMS_SHARED_CACHE:
    CACHES["login"] = cache_from_url("HKMS_CACHE_URL", _CACHE_URL, key_prefix=f"{_CACHE_PREFIX}-login")
else:
    CACHES["login"] = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(HKMS_DATA_DIR / "cache" / "login"),
    }
#: How the console starts a background DEK re-wrap: "process" (manage.py rewrap_deks) or "inline".
HKMS_CONSOLE_JOB_RUNNER = env_str("HKMS_CONSOLE_JOB_RUNNER", "process")

SPECTACULAR_SETTINGS = {
    "TITLE": "HKMS API",
    "DESCRIPTION": "Scaleway-compatible Secret Manager v1beta1 and Key Manager v1alpha1 APIs. "
    "Authenticate with the X-Auth-Token header (an API key's secret key).",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ScalewayToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}}
    },
    "SECURITY": [{"ScalewayToken": []}],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "hkms_site.api.schema_hooks.add_error_responses",  # 4XX / 503 in Scaleway's shape on every operation
    ],
}
