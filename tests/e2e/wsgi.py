"""WSGI entry point of the end-to-end test's gunicorn workers.

Same as ``example_app:create_app()``, except that it first installs the test-only contract
stub (``tests/example/contract_stub.py``) when the tracking/views helpers are not merged
yet; with them merged, the stub does nothing.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from example.contract_stub import install

install()

from example_app import create_app  # noqa: E402

app = create_app()
