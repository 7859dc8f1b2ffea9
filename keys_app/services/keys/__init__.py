"""Key Manager services: the guarded, audited operations behind the v1alpha1 API.

One module per concern, imported by name (this package re-exports nothing):
:mod:`.limits`, :mod:`.validation`, :mod:`.permissions`, :mod:`.metadata` (create,
get, list, update), :mod:`.lifecycle` (delete, restore, protect, enable, disable,
rotate), :mod:`.use` (encrypt, decrypt, data keys, sign, verify, wrap, unwrap),
:mod:`.key_material` (import, crypto-shredding), :mod:`.scheduling` (due rotations,
purges).

Every function takes the acting ``principal`` (keyword-only) and enforces the
roles of :mod:`hkms_core.access` itself, so the REST API, the console and the
commands cannot skip a check:

* metadata reads need ``KEY_VIEW``; encrypt, decrypt, data keys, sign, verify,
  wrap and unwrap need ``KEY_USE``; everything that changes a key needs
  ``KEY_ADMIN`` (creating one: ``KEY_ADMIN`` on the project);
* a key the principal may not see, a key in another region and a key whose
  deletion became final answer :class:`ObjectNotFound` (404), never 403.

Audit: every state change is recorded inside the transaction of the change
(``default`` database), every key use before its result is returned; a
refusal is recorded as ``denied`` and a use or change that fails its
precondition as ``failed``.  Events carry ids, versions and algorithm names,
never plaintexts, ciphertexts, signatures or key bytes.

Keys are the KEKs of the hierarchy: each version's material is sealed by the
REK on the ``kek`` database (``material.kek_version_create``), metadata lives
on ``default``.  There is no transaction across databases; each multi-database
operation below says in which order it commits and why a crash is safe.

Ciphertext format of ``encrypt`` and ``generate_data_key`` (symmetric keys):
``crypto.seal`` output under the key version that made it (the header names
that version), with associated data ``aad("key-manager", key_id,
associated_data)``.  Old versions keep decrypting after a rotation; decrypting
with an old version also returns the plaintext re-encrypted under the primary
version (Scaleway's ``DecryptResponse.ciphertext``).
"""
