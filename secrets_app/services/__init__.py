"""Secret Manager services: every function takes the acting principal, checks it, audits.

These are the only entry points for the REST API, the console and commands that
change secrets or read payloads; ``secrets_app.storage`` below them does no
authorization.  Read-only listings live in :mod:`secrets_app.selectors`.  Import
each function from the module that owns it:

* :mod:`.lookups`: what a call names, if the principal may act on it (audited 404 otherwise);
* :mod:`.secrets`: secret metadata, deletion, restore, protection;
* :mod:`.versions`: versions (encrypt on create), status changes;
* :mod:`.access`: payload reads, the only decryption;
* :mod:`.deletion`: the deletion window and destruction (DEK first);
* :mod:`.expiry`: the ``expire_secret_versions`` command.

Invariants, for all of them:

* Objects the principal may not see answer :class:`ObjectNotFound` (404).
* Every payload read and every change appends an audit event inside the same
  transaction on the default database (fail closed: no event, no payload).
  Metadata reads are not audited and never touch the key databases.
* Every change follows the one locking rule of :mod:`secrets_app.states`.
* Deletion is scheduled for ``hkms_core.lifecycle.DELETION_DELAY`` (metadata readable,
  payload not, restorable); ``secret_versions_expire`` destroys what is due, DEK first
  (crypto-shredding).  An ephemeral secret is destroyed at once.
* Ephemeral versions are enforced at access time (``now`` is injectable); the
  expire command applies their action for good.
"""
