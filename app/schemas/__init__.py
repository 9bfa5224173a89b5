"""Request and response bodies of the HTTP API (separate from the ORM tables in ``app.db``)."""
