"""The app floor's part of the ``lelp`` command: every verb that needs no worker.

The console script itself is ``worker.cli`` (the composition root, on the top floor); it takes
this module's typer app and adds ``serve`` and ``worker``. What is here:

- library verbs (``distill``, ``make-teacher``, ``predict``, ``evaluate``) come from
  ``lelp.cli.register_commands`` and need no service;
- ``api`` (the production API process), ``db upgrade|downgrade|current``, ``admin create-key``;
  ``serve`` (API + one worker child) and ``worker`` name the worker's Celery app, so the
  console script's top-floor module ``worker.cli`` adds them (``app`` never imports ``worker``);
- client verbs over HTTP (``teachers``, ``datasets``, ``jobs``, ``models``), configured by
  ``LELP_API_URL`` and ``LELP_API_KEY``.

Importing this module loads neither torch nor the worker: heavy imports happen inside
the command that needs them. An error prints ``error: <code>: <message>`` and exits 2 for a
user's mistake (a 4xx, a missing file), 1 for a server or network failure (``app.client.commands``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.client.commands import PLAIN, JobProgressBar, cli_errors, fail, plain_metavars
from app.client.commands import register as register_client_verbs
from lelp.cli import register_commands

__all__ = ["JobProgressBar", "app", "main"]

# Plain click help (``--teacher ID``, ``--wait / --no-wait``) rather than rich's type labels.
app = typer.Typer(help="LELP Distill: distil few-class text classifiers, as a library or a service.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
db_app = typer.Typer(help="Database migrations (the schema comes only from them).", **PLAIN)
admin_app = typer.Typer(help="Administration: API keys.", **PLAIN)
for _sub, _name in ((db_app, "db"), (admin_app, "admin")):
    app.add_typer(_sub, name=_name)
register_client_verbs(app)

register_commands(app)  # the library's verbs (lelp.cli imports no torch until a verb runs)


# --- servers (``serve`` and ``worker`` start workers: ``worker.cli`` adds them) ----------------


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run only the API (production: set LELP_DATABASE_URL, LELP_BROKER_URL, LELP_ARTIFACT_URL)."""
    import uvicorn

    from app.http_server import uvicorn_options
    from app.settings import get_settings

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="info",
                proxy_headers=True, **uvicorn_options(get_settings()))


# --- database and admin --------------------------------------------------------------------------


@db_app.command("upgrade")
@cli_errors
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default head) on LELP_DATABASE_URL."""
    from app.db.migrate import upgrade
    from app.settings import get_settings

    upgrade(get_settings().database_url, revision)


@db_app.command("downgrade")
@cli_errors
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision (base drops everything).")]) -> None:
    """Revert migrations down to REVISION."""
    from app.db.migrate import downgrade
    from app.settings import get_settings

    downgrade(get_settings().database_url, revision)


@db_app.command("current")
@cli_errors
def db_current() -> None:
    """Print the database's current revision."""
    from app.db.migrate import current
    from app.settings import get_settings

    typer.echo(current(get_settings().database_url) or "(empty)")


@admin_app.command("create-key")
@cli_errors
def create_key(tenant: Annotated[str, typer.Option(metavar="NAME", help="Tenant name (created if new).")]) -> None:
    """Create an API key for TENANT and print only the key (it is stored hashed)."""
    from app.db.session import session_scope
    from app.security import create_api_key
    from app.settings import get_settings

    with session_scope(get_settings().database_url) as session:
        key = create_api_key(session, tenant)
    typer.echo(key)


@admin_app.command("list-keys")
@cli_errors
def list_keys(tenant: Annotated[str | None, typer.Option(metavar="NAME", help="Only this tenant's keys.")] = None
              ) -> None:
    """List API keys (id, tenant, prefix, created, revoked); the keys themselves are never stored."""
    from app.db import repositories as repo
    from app.db.session import session_scope
    from app.settings import get_settings

    with session_scope(get_settings().database_url) as session:
        rows = [{"id": key.id, "tenant": name, "prefix": key.prefix, "created_at": key.created_at.isoformat(),
                 "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}
                for key, name in repo.list_api_keys(session, tenant)]
    typer.echo(json.dumps(rows, indent=2))


@admin_app.command("revoke-key")
@cli_errors
def revoke_key(key: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (key_...) or its "
                                                                         "12-character prefix (list-keys).")]) -> None:
    """Revoke an API key: requests with it get 401 (within 30 s on API processes that cached it)."""
    from app.db import repositories as repo
    from app.db.session import session_scope
    from app.settings import get_settings

    with session_scope(get_settings().database_url) as session:
        revoked = repo.revoke_api_key(session, key)
        if revoked is None:
            raise fail("key_not_found", f"no API key with id or prefix {key!r} (see `lelp admin list-keys`)")
        typer.echo(f"revoked {revoked.id} ({revoked.prefix}...)")


def main() -> None:
    command = typer.main.get_command(app)
    plain_metavars(command)
    command()


if __name__ == "__main__":
    main()
