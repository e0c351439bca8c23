"""Watches (issue 16): compare every new checkpoint of a distillation run against its teacher.

- :mod:`watches.request`: the body of ``POST /v1/watches`` (checkpoint source, alert rules);
- :mod:`watches.store`: watch records in Redis (:class:`~watches.store.WatchRecord`), history,
  the webhook outbox and delivery log;
- :mod:`watches.checkpoints`: what a watch's source holds now, and when a checkpoint has settled;
- :mod:`watches.regressions`: the alert rules, a checkpoint judged against its baseline;
- :mod:`watches.webhooks`: event bodies, their signature, which targets may receive them.

Used by the API (service/api/v1/watches.py) and the watch worker (worker/watching.py). The jobs a
watch creates are ordinary comparison jobs (:mod:`jobs.store`); ``watches`` imports ``jobs`` and
the torch-free engine leaves, never ``service``, ``worker``, the launcher or torch, and ``jobs``
never imports ``watches`` (``tests/system/test_layout.py``).
"""
