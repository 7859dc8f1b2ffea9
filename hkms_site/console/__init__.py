"""The browser console: the Django admin site with the pages an operator needs.

Views stay thin: they build the request's :class:`~hkms_core.access.principal.Principal`
and call the same guarded services as the REST API and the commands, so the
console can neither skip a permission check nor an audit event.
"""
