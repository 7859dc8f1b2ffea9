"""Key Manager v1alpha1 REST API (wire-compatible with Scaleway's SDKs)."""
