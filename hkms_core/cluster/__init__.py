"""Cluster-wide state that every node checks: the seal epoch (see :mod:`hkms_core.cluster.seal`)."""
