"""gunicorn settings for the example app with Prometheus summed over the workers.

``PROMETHEUS_MULTIPROC_DIR=/tmp/dataroom-metrics gunicorn -c example_app/gunicorn_conf.py
--workers 3 'example_app:create_app()'``: the directory is emptied when gunicorn starts
(the counters of a previous run are not this run's) and each dead worker's live gauges are
dropped (its counters stay in the sum: Prometheus counters never go backwards).
"""

from __future__ import annotations

import os
import shutil
from typing import Any


def on_starting(server: Any) -> None:
    """In the arbiter, before any worker: a fresh, empty directory."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)


def child_exit(server: Any, worker: Any) -> None:
    """In the arbiter, after a worker exited (or was killed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
