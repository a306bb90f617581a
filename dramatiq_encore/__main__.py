"""``python -m dramatiq_encore`` is the ``encore`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
