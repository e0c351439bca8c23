"""``make run``'s launcher: the whole stack on one machine, no Docker (``python -m launcher``).

- :mod:`launcher.stack`: what it starts, in which order, and the supervision loop that restarts a
  child that died;
- :mod:`launcher.redis_server`: a private Redis server (never the machine's shared 6379), also used
  by the tests;
- :mod:`launcher.children`: child processes that never outlive their parent.

The launcher starts the API, the workers and beat as processes, with the command lines of
:mod:`jobs.commands`; it imports ``jobs`` (settings, command lines) and never ``service``,
``worker``, ``watches`` or torch (``tests/system/test_layout.py``).
"""
