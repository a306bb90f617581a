"""An app given its broker (no ENCORE_BROKER_URL needed): `encore worker` must not warn."""

from dramatiq.brokers.stub import StubBroker

from dramatiq_encore import Encore
from dramatiq_encore.state import MemoryState

app = Encore(broker=StubBroker(), state=MemoryState())
