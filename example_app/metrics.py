"""``GET /metrics``: the cache's counters in Prometheus' text format (extra ``metrics``).

Under gunicorn, start it with ``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory) and the
``child_exit`` hook of ``example_app/gunicorn_conf.py``: every worker then writes its
counters there and each scrape, whichever worker answers it, reports the sum over all of
them (docs/observability.md). Without the variable, each process reports its own.

Registered only when prometheus_client is installed (the OpenAPI document names the route
under the same condition). Public, like a metrics endpoint behind a private network usually
is; never cached.
"""

from __future__ import annotations

import importlib.util

from flask import Flask, Response

from .extensions import cache

#: prometheus_client is installed: the route exists.
AVAILABLE = importlib.util.find_spec("prometheus_client") is not None


def register(app: Flask) -> None:
    if not AVAILABLE:
        return
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = cache.prometheus_registry(app)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
