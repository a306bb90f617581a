"""``wf_app``'s tasks, served with dramatiq's own Prometheus middleware as well: a deployment
that already exports dramatiq's metrics (port ``dramatiq_prom_port``) keeps them beside
encore's (``ENCORE_METRICS_PORT``). Used by tests/integration/test_metrics_processes.py.
"""

from __future__ import annotations

from dramatiq.middleware.prometheus import Prometheus

from tests.integration.wf_app import app

app.broker.add_middleware(Prometheus())
