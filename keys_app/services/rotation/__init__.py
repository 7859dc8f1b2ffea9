"""Rotation at every level of the hierarchy: the REK (:mod:`.rek`), KEKs and DEK re-wraps (:mod:`.kek`).

DEK rotation (re-encrypting secret versions) and key revocation build on these and live
with the secrets: ``secrets_app.services.dek_rotation`` and ``secrets_app.services.revocation``.
The rules below hold for all of them.


There is no transaction across the three databases, so each operation is
ordered to be crash-safe and resumable (see docs/architecture.md):

* new key material is created and committed first;
* references are moved in committed batches, each row by compare-and-set
  (``UPDATE … WHERE id = ? AND <old reference>``), so a concurrent writer or a
  re-run never clobbers newer state;
* old material is retired or destroyed only when nothing references it.

A ``kill -9`` at any instant therefore leaves every secret readable, and
re-running the same command continues the interrupted job (``keys_app.services.jobs``).
Reads and writes go on during every rotation.
"""
