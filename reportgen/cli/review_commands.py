"""`reportgen review [verify|migrate]`, `reportgen users ...`, `reportgen corrections export`."""

from __future__ import annotations

import ipaddress
import stat
import sys
from pathlib import Path

import typer

from reportgen.cli import app
from reportgen.cli.options import out_option
from reportgen.errors import ConfigError, InputError

DB_HELP = "Reward log: a SQLite file (created if new) or postgresql://user:pass@host/db."
KEY_HELP = (
    "The reward log's key file, mode 600 (default: one per database under "
    "~/.config/reportgen/log-keys, or $REPORTGEN_LOG_KEY_FILE; a new log creates it)."
)

review_app = typer.Typer(
    help="The review page where clinicians correct and sign drafts, and its log's checks.",
)
users = typer.Typer(help="Clinician accounts of the review app.", no_args_is_help=True)
corrections = typer.Typer(help="Clinicians' corrections in the reward log.", no_args_is_help=True)
app.add_typer(review_app, name="review")
app.add_typer(users, name="users")
app.add_typer(corrections, name="corrections")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_secret(secret_file: Path) -> str:
    if not secret_file.is_file():
        raise InputError(secret_file, "no such file")
    if stat.S_IMODE(secret_file.stat().st_mode) & 0o077:
        raise InputError(
            secret_file, "readable by group or others; make it private (chmod 600) first"
        )
    secret = secret_file.read_text().strip()
    if len(secret) < 32:
        raise InputError(secret_file, "the secret must be at least 32 characters")
    return secret


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
    studies: Path = typer.Option(
        None, "--studies", help="Folder with studies and the drafts `reportgen generate` wrote."
    ),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    secret_file: Path = typer.Option(
        None,
        "--secret-file",
        help="Key that signs session cookies, mode 600 (default: a new one per start).",
    ),
    https_only: bool = typer.Option(
        False, "--https-only", help="Secure cookies and HSTS: behind TLS, or with --ssl-*."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback --host without --https-only."
    ),
    ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="Serve TLS with this cert."),
    ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="... and this private key."),
    idle_minutes: float = typer.Option(
        30.0, "--idle-minutes", help="A session ends after this long without a request."
    ),
    forwarded_allow_ips: str = typer.Option(
        None,
        "--forwarded-allow-ips",
        help="Reverse proxies (comma-separated addresses) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; without it they are ignored.",
    ),
) -> None:
    """Serve the review page: clinicians correct and sign drafts; corrections go to the log."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from reportgen.review.app import ReviewSettings, create_app, security_headers
    from reportgen.review.drafts import import_drafts
    from reportgen.review.store import RewardLog

    if studies is not None and not studies.is_dir():
        raise InputError(studies, "not a folder")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, not {port}")
    if not 1 <= idle_minutes <= 24 * 60:
        raise ConfigError(f"--idle-minutes must be 1-1440, not {idle_minutes}")
    if not _loopback(host) and not https_only and not insecure:
        raise ConfigError(
            f"--host {host} is reachable from other machines: serve it behind TLS with "
            "--https-only (or accept plain HTTP with --insecure)"
        )
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
    settings = ReviewSettings(
        db=db,
        studies=studies,
        https_only=https_only or bool(ssl_certfile),
        server_adds_headers=True,
    )
    if secret_file is not None:
        settings.secret = _read_secret(secret_file)
    store = RewardLog(db, log_key)
    store.check_chain()  # refuse to serve (and add to) a log someone rewrote
    store.sessions.idle_s = idle_minutes * 60
    if studies is not None:
        added, seen = import_drafts(store, studies)
        typer.echo(f"drafts: {seen} found in {studies}, {added} new")
    scheme = "https" if ssl_certfile else "http"
    typer.echo(f"reward log: {store.engine.url.render_as_string(hide_password=True)}")
    typer.echo(f"review page: {scheme}://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(
        create_app(settings, store),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        # httptools puts these on every response, its own 400s for malformed requests too
        http="httptools",
        headers=list(security_headers(settings).items()),
        server_header=False,
        # a client's X-Forwarded-For is believed only from a proxy the operator named
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or "",
    )


@review_app.command("verify")
def review_verify(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
) -> None:
    """Check the log's hash chain: names the first row changed, deleted or slipped in."""
    from reportgen.review.store import RewardLog, integrity_problems

    store = RewardLog(db, log_key)
    problems = store.verify() + integrity_problems(store.engine)
    if problems:
        for problem in problems:
            typer.echo(f"broken: {problem}")
        typer.echo(f"the reward log was altered outside the app ({len(problems)} problems)")
        raise typer.Exit(1)
    head = store.chain_head()
    typer.echo(f"ok: {head[0]} rows chained; head {head[1]} (keep it to compare later)")


@review_app.command("rekey")
def review_rekey(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
) -> None:
    """Key a log written before keyed chains, once: after it, no one without the key file
    can append a row `verify` accepts. Refuses a log whose chain does not verify."""
    from reportgen.review.store import RewardLog

    key_file = RewardLog(db, log_key).rekey()
    typer.echo(
        f"keyed: every row so far is sealed, every new one linked with the key in {key_file} "
        "(keep it off the database server and back it up apart from the database)"
    )


@review_app.command("migrate")
def review_migrate(
    db: str = typer.Option(..., "--db", help="The database as its owner (PostgreSQL)."),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
    app_role: str = typer.Option(
        None, "--app-role", help="PostgreSQL role the app connects as: may read and append only."
    ),
) -> None:
    """Bring the log's schema up to date (as the owner), and limit the app's role."""
    from reportgen.review.store import RewardLog
    from reportgen.review.store.engine import grant_app_role

    store = RewardLog(db, log_key)
    if app_role:
        grant_app_role(store.engine, app_role)
        typer.echo(f"role {app_role}: may read and append; no UPDATE, DELETE, TRUNCATE or DDL")
    typer.echo("schema up to date")


def _password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("add")
def users_add(
    username: str = typer.Argument(..., help="Sign-in name."),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
    name: str = typer.Option(None, "--name", help="Name shown on signed reports."),
    role: str = typer.Option("reviewer", "--role", help="reviewer | admin"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (for scripts)."
    ),
) -> None:
    """Create a clinician account (the password is stored as an Argon2 hash)."""
    from reportgen.review.store import RewardLog

    clinician_id = RewardLog(db, log_key).accounts.add(
        username, name or username, _password(password_stdin), role
    )
    typer.echo(f"added clinician {username!r} (id {clinician_id}, {role})")


@users.command("list")
def users_list(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
) -> None:
    """Every account with its role, state and live sessions."""
    from reportgen.review.store import RewardLog

    store = RewardLog(db, log_key)
    for a in store.accounts.all():
        state = "disabled" if a.disabled else "enabled"
        live = store.sessions.live(a.id)
        typer.echo(
            f"{a.id}\t{a.username}\t{a.role}\t{state}\t{live} live sessions\t{a.display_name}"
        )


@users.command("disable")
def users_disable(
    username: str = typer.Argument(...),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
) -> None:
    """Disable an account and end its sessions at once (its signed reports stay)."""
    from reportgen.review.store import RewardLog

    store = RewardLog(db, log_key)
    account = store.accounts.set_disabled(username, True)
    ended = store.sessions.end_all(account.id)
    typer.echo(f"disabled {username!r}; ended {ended} sessions")


@users.command("enable")
def users_enable(
    username: str = typer.Argument(...),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
) -> None:
    """Enable a disabled account again."""
    from reportgen.review.store import RewardLog

    RewardLog(db, log_key).accounts.set_disabled(username, False)
    typer.echo(f"enabled {username!r}")


@users.command("password")
def users_password(
    username: str = typer.Argument(...),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
    password_stdin: bool = typer.Option(False, "--password-stdin"),
) -> None:
    """Set a new password (a new, audited row) and end the account's sessions."""
    from reportgen.review.store import RewardLog

    store = RewardLog(db, log_key)
    account = store.accounts.set_password(username, _password(password_stdin))
    ended = store.sessions.end_all(account.id)
    typer.echo(f"new password for {username!r}; ended {ended} sessions")


@users.command("role")
def users_role(
    username: str = typer.Argument(...),
    role: str = typer.Argument(..., help="reviewer | admin"),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
) -> None:
    """Make an account a reviewer (edit and sign own drafts) or an admin (override, users)."""
    from reportgen.review.store import RewardLog

    RewardLog(db, log_key).accounts.set_role(username, role)
    typer.echo(f"{username!r} is now {role}")


@users.command("end-sessions")
def users_end_sessions(
    username: str = typer.Argument(...),
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
) -> None:
    """Sign an account out everywhere, at once."""
    from reportgen.review.store import RewardLog

    store = RewardLog(db, log_key)
    account = store.accounts.by_name(username)
    if account is None:
        raise ConfigError(f"no user {username!r}")
    typer.echo(f"ended {store.sessions.end_all(account.id)} sessions of {username!r}")


@corrections.command("export")
def corrections_export(
    db: str = typer.Option("reviews.db", "--db", help=DB_HELP),
    log_key: Path = typer.Option(None, "--log-key", help=KEY_HELP),
    out: Path = out_option("JSONL file to write."),
) -> None:
    """Write every correction (draft, signed report, field diff, time spent) as JSONL."""
    from reportgen.review.store import RewardLog

    count = RewardLog(db, log_key).export_corrections(out)
    typer.echo(f"wrote {count} corrections to {out}")
