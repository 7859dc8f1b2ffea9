"""Cluster-wide state that every node checks: the seal epoch (see :mod:`hkms_site.cluster.seal`)."""
