"""Version 1 of the HTTP API: one router per resource."""

from . import comparisons, datasets, models, tasks, watches

routers = [comparisons.router, models.router, tasks.router, datasets.router, watches.router]
