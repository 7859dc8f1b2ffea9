"""Cluster-wide state that every node checks: the seal epoch.

The row and its reads are :mod:`hkms_core.cluster.epoch`; the check that seals a node is
:mod:`keys_app.cluster_seal`.
"""
