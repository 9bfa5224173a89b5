"""LELP Distill service: the HTTP API, its database layer and settings.

Importing ``app`` (or ``app.main``) never imports torch: predictions load
``lelp.artifacts`` lazily, so the API process starts fast and stays small.
"""

__version__ = "0.1.0"
