"""The foundation layer: what every app stands on and nothing of theirs.

Tenancy (projects), access (users, API keys, roles, principals), the audit chain, the one error
hierarchy, environment parsing, database routing and the REST plumbing of Scaleway's wire
format.  It imports Django, DRF and guardian only — never ``keys_app``, ``secrets_app`` or
``hkms_site`` (the import-linter contracts in ``pyproject.toml`` enforce it; docs/architecture.md
draws the layers).
"""
