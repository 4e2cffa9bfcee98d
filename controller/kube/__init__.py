"""Kubernetes mode: the custom resources, the kopf operator, and the REST mirror."""
