"""``python -m launcher`` (``make run``): see :mod:`launcher.stack`."""

from .stack import main

if __name__ == "__main__":
    raise SystemExit(main())
