"""An app with neither ENCORE_BROKER_URL nor a broker: `encore worker` warns that it is embedded."""

from dramatiq_encore import Encore

app = Encore()
