"""What the API, the workers and the local launcher share, and nothing else: the core of the job side.

- :mod:`jobs.settings`: the one settings class (``CIRCUITDIFF_*`` environment variables);
- :mod:`jobs.store`: job records in Redis (:class:`~jobs.store.JobRecord`) and the Lua scripts that
  move them (:mod:`jobs.store_scripts`);
- :mod:`jobs.turns`: the turn order between API keys (which queued job a free worker takes next,
  and each job's place);
- :mod:`jobs.queue`: queue and task names, the Celery configuration, and :func:`~jobs.queue.send_job`,
  the producer, which knows only the task's name;
- :mod:`jobs.content`: a job's content key and the weight fingerprints it is made of;
- :mod:`jobs.errors`: the sanitized error a failed job records;
- :mod:`jobs.commands`: the API and worker command lines, the one source for ``make run``, the
  tests and the Dockerfile.

Two features live beside it in their own packages: the watches (:mod:`watches`) and ``make run``'s
launcher (:mod:`launcher`); both import ``jobs``, and ``jobs`` imports neither.

Imports run one way: ``service`` and ``worker`` import ``jobs``; ``jobs`` imports neither of them,
nor torch (only redis, celery, pydantic-settings and the torch-free leaves of ``circuitdiff``).
The service never imports the worker and the worker never imports the service: the API sends a task
by name and the launcher starts both as processes (``tests/system/test_layout.py`` checks it).
"""
