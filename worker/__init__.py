"""The Celery worker: runs distillation jobs that the API committed and enqueued.

The API never imports this package (it sends through ``app.queue``); ``worker.tasks`` and
``worker.runner`` load the ML library in the worker process, and ``worker.cli`` is the ``lelp``
console script, which also starts the embedded service (``worker.embedded``) and GPU workers.
"""
