"""Principals (users, API keys), per-object roles (django-guardian) and authorization."""
