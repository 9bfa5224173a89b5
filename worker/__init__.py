"""The Celery worker: runs distillation jobs that the API committed and enqueued.

``worker.celery_app`` is light (the API imports it to enqueue); ``worker.tasks`` and
``worker.runner`` load the ML library and are imported by the worker process only.
"""
