"""Chaos runner for dramatiq-encore: real workers, real RabbitMQ and Redis, injected faults.

Run ``python -m chaos.run --short`` (CI) or ``python -m chaos.run --workflows 300 --seed 1``;
see ``chaos/README.md``. Kept outside ``tests/`` so the default pytest run never starts it.
"""
