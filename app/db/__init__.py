"""Database layer shared by the API and the worker.

A leaf package: it imports nothing else from ``app`` so the worker can use it without
loading the web stack. The schema itself comes only from the Alembic migrations.
"""
