"""`reportgen review`, `reportgen users add`, `reportgen corrections export`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.errors import ConfigError, InputError

DB_HELP = "Reward log: a SQLite file (created if new) or postgresql://user:pass@host/db."

users = typer.Typer(help="Clinician accounts of the review app.", no_args_is_help=True)
corrections = typer.Typer(help="Clinicians' corrections in the reward log.", no_args_is_help=True)
app.add_typer(users, name="users")
app.add_typer(corrections, name="corrections")


@app.command()
def review(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    studies: Path = typer.Option(
        None, "--studies", help="Folder with studies and the drafts `reportgen generate` wrote."
    ),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    secret_file: Path = typer.Option(
        None,
        "--secret-file",
        help="Key that signs session cookies (default: a new one per start; sessions end on restart).",
    ),
) -> None:
    """Serve the review page: clinicians correct and sign drafts; corrections go to the log."""
    import uvicorn

    from reportgen.review.app import ReviewSettings, create_app
    from reportgen.review.drafts import import_drafts
    from reportgen.review.store import RewardLog

    if studies is not None and not studies.is_dir():
        raise InputError(studies, "not a folder")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, not {port}")
    settings = ReviewSettings(db=db, studies=studies)
    if secret_file is not None:
        if not secret_file.is_file():
            raise InputError(secret_file, "no such file")
        settings.secret = secret_file.read_text().strip()
        if len(settings.secret) < 32:
            raise InputError(secret_file, "the secret must be at least 32 characters")
    store = RewardLog(db)
    if studies is not None:
        added, seen = import_drafts(store, studies)
        typer.echo(f"drafts: {seen} found in {studies}, {added} new")
    typer.echo(f"reward log: {store.engine.url.render_as_string(hide_password=True)}")
    typer.echo(f"review page: http://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(create_app(settings, store), host=host, port=port, log_level="warning")


@users.command("add")
def users_add(
    username: str = typer.Argument(..., help="Sign-in name."),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    name: str = typer.Option(None, "--name", help="Name shown on signed reports."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (for scripts)."
    ),
) -> None:
    """Create a clinician account (the password is stored as an Argon2 hash)."""
    from reportgen.review.store import RewardLog

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    clinician_id = RewardLog(db).add_clinician(username, name or username, password)
    typer.echo(f"added clinician {username!r} (id {clinician_id})")


@corrections.command("export")
def corrections_export(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    out: Path = typer.Option(..., "--out", help="JSONL file to write."),
) -> None:
    """Write every correction (draft, signed report, field diff, time spent) as JSONL."""
    from reportgen.review.store import RewardLog

    count = RewardLog(db).export_corrections(out)
    typer.echo(f"wrote {count} corrections to {out}")
