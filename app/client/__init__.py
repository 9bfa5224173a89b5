"""The service's Python client (``http``) and the ``lelp`` verbs built on it (``commands``)."""

from app.client.http import ApiError, LelpClient

__all__ = ["ApiError", "LelpClient"]
