"""Observability: Prometheus metrics (``/metrics``), request ids and structured JSON logs.

See ``docs/observability.md``.  Nothing here reads the database per request:
the request middleware does a dict lookup and two counter updates; database
queries happen only when ``/metrics`` is scraped.
"""
