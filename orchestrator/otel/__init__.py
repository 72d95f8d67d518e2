"""OpenTelemetry plumbing: configuration (``config``), provider and exporter setup with a
bounded flush and shutdown (``setup``), the fault-guarded exporter shared by spans and
metrics (``export``), metrics export (``metrics``) and the dev-mode span tree
(``devtree``).

Only ``config`` is safe to import without the ``tracing`` extra; the others import
OpenTelemetry and are loaded when tracing is actually on.  :mod:`orchestrator.tracing`
is the public face.
"""
