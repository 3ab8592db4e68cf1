"""The reward log's key: what makes its hash chain unforgeable by someone who can only write
to the database.

Each link of the chain is an HMAC-SHA256 under this key (`chain.py`), so a row appended
with a valid-looking link by anyone holding the app role's password or the SQLite file's
write access, but not the key, is named by `reportgen review verify`. The key lives in a
file outside the database (mode 600): by default under the operator's configuration
folder, one per database, or where `--log-key` / `REPORTGEN_LOG_KEY_FILE` says. It cannot
protect a log from someone who holds both the key and the database: keep the key file
on the app server only, owned by the account the app runs as, and back it up apart from
the database (a log whose key is lost can be read and verified only as unkeyed).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import URL

from reportgen.errors import ConfigError

KEY_ENV = "REPORTGEN_LOG_KEY_FILE"
KEY_BYTES = 32
_FINGERPRINT_MESSAGE = b"reportgen reward log key"


def default_key_file(db_url: URL) -> Path:
    """`$XDG_CONFIG_HOME/reportgen/log-keys/<hash of where the database is>.key` (or the file
    `REPORTGEN_LOG_KEY_FILE` names): never inside the folder or server that holds the log.
    The database's location, not its user, names it: the owner migrating and the app role
    serving share one key."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    where = (
        f"{db_url.get_backend_name()}://{db_url.host or ''}:{db_url.port or ''}/{db_url.database}"
    )
    name = hashlib.sha256(where.encode()).hexdigest()[:16]
    return config / "reportgen" / "log-keys" / f"{name}.key"


def fingerprint(key: bytes) -> str:
    """What the chain records of its key: names it without revealing it."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()


def read_key(path: Path) -> bytes:
    if not path.is_file():
        raise ConfigError(
            f"the reward log is keyed, but its key file {path} does not exist: name it with "
            f"--log-key FILE (or {KEY_ENV})"
        )
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(f"log key {path} is readable by group or others; chmod 600 it first")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise ConfigError(f"log key {path} is not a hex key") from exc
    if len(key) < KEY_BYTES:
        raise ConfigError(f"log key {path} is shorter than {KEY_BYTES} bytes")
    return key


def create_key(path: Path) -> bytes:
    """A new random key in a new file, readable by its owner only (never overwrites one)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return read_key(path)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex() + "\n")
    return key
