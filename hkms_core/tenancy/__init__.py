"""Tenancy: the project, the tenant every secret and key belongs to (foundation layer)."""
