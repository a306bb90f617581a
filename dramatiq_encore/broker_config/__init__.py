"""Settings, broker factories and middleware assembly."""

from .brokers import make_broker
from .middleware import EncoreMiddleware
from .quorum import EncoreRabbitmqBroker, QueueTypeMismatch, QuorumRabbitmqBroker
from .settings import EncoreSettings, load_settings, redact

__all__ = [
    "EncoreMiddleware",
    "EncoreRabbitmqBroker",
    "EncoreSettings",
    "QueueTypeMismatch",
    "QuorumRabbitmqBroker",
    "load_settings",
    "make_broker",
    "redact",
]
