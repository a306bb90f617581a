"""Settings, broker factories and middleware assembly."""

from .brokers import make_broker
from .middleware import EncoreMiddleware
from .settings import EncoreSettings, load_settings, redact

__all__ = ["EncoreMiddleware", "EncoreSettings", "load_settings", "make_broker", "redact"]
