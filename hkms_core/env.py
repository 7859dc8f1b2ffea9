"""Tiny typed readers for settings from the environment.

Each reader fails loudly with ``ImproperlyConfigured`` on a malformed value
instead of silently falling back to a default.  ``env_secret`` also honours
``NAME_FILE`` (a path to a file holding the value), the usual way to mount
secrets in containers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default.resolve()


def env_secret(name: str, default: str | None = None) -> str | None:
    """``NAME`` or the content of the file named by ``NAME_FILE``."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name} cannot be read: {exc.strerror}") from None
    return os.environ.get(name, default)


def parse_libpq_options(name: str, raw: str) -> dict[str, str]:
    """``"target_session_attrs=read-write connect_timeout=5"`` (libpq ``key=value`` words) -> a dict."""
    options: dict[str, str] = {}
    for word in raw.split():
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise ImproperlyConfigured(f"{name} must be space-separated key=value words, got {word!r}")
        options[key] = value
    return options


def parse_database_url(name: str, url: str, *, conn_max_age: int) -> dict[str, Any]:
    """A Django ``DATABASES`` entry from a database URL, libpq multi-host URLs included.

    ``postgres://user:pw@db1:5432,db2:5433/hkms?target_session_attrs=read-write`` gives
    ``HOST="db1,db2"``, ``PORT="5432,5433"`` (libpq tries them in order and keeps the one
    that satisfies ``target_session_attrs``); query parameters become ``OPTIONS``, which
    Django passes to libpq as connection parameters.  dj-database-url alone refuses a
    comma-separated host list with ports.
    """
    import dj_database_url  # local: only settings that name a database URL need it

    hosts: list[tuple[str, str]] = []
    scheme, sep, rest = url.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        userinfo, at, hostlist = authority.rpartition("@")
        if "," in hostlist:
            for item in hostlist.split(","):
                host, colon, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
                if not colon:
                    host, port = item, ""
                if not host:
                    raise ImproperlyConfigured(f"{name} has an empty host in its host list")
                hosts.append((host, port))
            url = f"{scheme}://{userinfo}{at}multihost-placeholder{slash}{path}"
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=conn_max_age))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a database URL: {exc}") from None
    if hosts:
        if config["ENGINE"] != "django.db.backends.postgresql":
            raise ImproperlyConfigured(f"{name}: a list of hosts is only understood for PostgreSQL")
        config["HOST"] = ",".join(host for host, _ in hosts)
        ports = [port for _, port in hosts]
        config["PORT"] = ",".join(port or "5432" for port in ports) if any(ports) else ""
    return config


def cache_from_url(name: str, url: str, *, key_prefix: str) -> dict[str, Any]:
    """A Django ``CACHES`` entry: ``redis://``/``rediss://`` (RedisCache), ``db://[table]``
    (DatabaseCache, default table ``hkms_cache``), or ``locmem://`` / empty (process memory)."""
    scheme = url.partition("://")[0].lower() if url else "locmem"
    if scheme in ("redis", "rediss", "unix"):
        try:
            import redis  # noqa: F401 - local: RedisCache needs it, and only a redis:// URL needs redis
        except ImportError:
            raise ImproperlyConfigured(f"{name}={scheme}://… needs the redis package: pip install redis") from None
        locations = [item.strip() for item in url.split(",") if item.strip()]
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": locations if len(locations) > 1 else locations[0],
            "KEY_PREFIX": key_prefix,
        }
    if scheme == "db":
        table = url.partition("://")[2].strip("/") or "hkms_cache"
        if not table.replace("_", "").isalnum():
            raise ImproperlyConfigured(f"{name}: db://TABLE needs a plain table name, got {table!r}")
        return {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": table, "KEY_PREFIX": key_prefix}
    if scheme == "locmem":
        return {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": key_prefix,
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    raise ImproperlyConfigured(f"{name} must be redis://…, rediss://…, db:// or locmem://, got a {scheme}:// URL")
