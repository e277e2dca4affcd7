"""Who reads governed data: principals of the catalog, authenticated by tokens the platform issues.

A principal is a consumer of consumers.yml or a member of teams.yml with a `role`; its role and attributes come
from the catalog, never from the caller. A token is issued once to a principal (`governance token issue`) and
stored only as its SHA-256 in <data>/governance/tokens.json (owner-only), with an id that names it in lists and the
audit log. A token's 256 random bits make a slow hash unnecessary. Missing, unknown, revoked or expired tokens,
and tokens of principals the catalog no longer has, are denied.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from governance.catalog import Catalog
from governance.paths import governance_dir

TOKEN_FILE = "tokens.json"
TOKEN = re.compile(r"gvt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
DEFAULT_DAYS = 90
MAX_DAYS = 366


class IdentityError(PermissionError):
    """No principal could be established (or a token could not be issued or revoked): the message says why and
    never repeats a token."""


@dataclass(frozen=True)
class Principal:
    name: str  # a consumer's name or a member's e-mail
    kind: str  # consumer | member
    role: str
    attributes: dict[str, str]
    audience: str  # who shares hash tokens: a consumer alone, a member with their team

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} (role {self.role})"


def principals(catalog: Catalog) -> dict[str, Principal]:
    """Every principal of the catalog by name: the consumers, and the team members given a role."""
    found = {name: Principal(name, "consumer", consumer.role, dict(consumer.attributes), f"consumer:{name}")
             for name, consumer in catalog.consumers.items()}
    for team_name, team in catalog.teams.items():
        for member in team.members:
            if member.role:
                found[member.email] = Principal(member.email, "member", member.role, dict(member.attributes),
                                                f"team:{team_name}")
    return found


# --- the token store -------------------------------------------------------------------------------------------

def tokens_path(data_dir: Path | None = None) -> Path:
    return governance_dir(data_dir) / TOKEN_FILE


@contextlib.contextmanager
def _store(data_dir: Path | None, write: bool):
    """The token records under an exclusive lock; written back whole (temporary file, then rename) when `write`."""
    path = tokens_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".tokens.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            records = json.loads(path.read_text()) if path.exists() else []
        except (OSError, ValueError) as error:
            raise IdentityError(f"{path}: the token store cannot be read ({type(error).__name__}): every token is "
                                "refused until it is restored from backup") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise IdentityError(f"{path}: the token store is not a list of records: every token is refused")
        yield records
        if write:
            temporary = path.with_name(f".tokens.{os.getpid()}.{secrets.token_hex(4)}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump(records, file, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(catalog: Catalog, principal: str, *, days: int = DEFAULT_DAYS, by: str = "",
                data_dir: Path | None = None) -> tuple[str, dict]:
    """A new token for `principal`: returns the token (shown once, never stored) and its record."""
    known = principals(catalog)
    if principal not in known:
        raise IdentityError(f"'{principal}' is not a principal of the catalog ({catalog.directory}): a consumer of "
                            "consumers.yml or a member of teams.yml with a role")
    if not 1 <= days <= MAX_DAYS:
        raise IdentityError(f"a token lives 1 to {MAX_DAYS} days, not {days}")
    token_id = secrets.token_hex(6)
    token = f"gvt_{token_id}_{secrets.token_urlsafe(32)}"
    now = _now()
    record = {"id": token_id, "principal": principal, "role": known[principal].role, "sha256": _digest(token),
              "issued_at": now.isoformat(timespec="seconds"), "issued_by": by,
              "expires_at": (now + dt.timedelta(days=days)).isoformat(timespec="seconds"), "revoked_at": None}
    with _store(data_dir, write=True) as records:
        records.append(record)
    return token, _public(record)


def revoke_token(token_id: str, *, by: str = "", data_dir: Path | None = None) -> dict:
    with _store(data_dir, write=True) as records:
        record = next((r for r in records if r.get("id") == token_id), None)
        if record is None:
            raise IdentityError(f"no token with id '{token_id}' (governance token list)")
        if not record.get("revoked_at"):
            record["revoked_at"], record["revoked_by"] = _now().isoformat(timespec="seconds"), by
        return _public(record)


def list_tokens(data_dir: Path | None = None) -> list[dict]:
    with _store(data_dir, write=False) as records:
        return [_public(record) | {"state": _state(record)} for record in records]


def _public(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "sha256"}


def _state(record: dict) -> str:
    if record.get("revoked_at"):
        return "revoked"
    try:
        expires = dt.datetime.fromisoformat(record["expires_at"])
    except (KeyError, TypeError, ValueError):
        return "invalid"
    return "expired" if expires <= _now() else "active"


def authenticate(catalog: Catalog, token: str | None, data_dir: Path | None = None) -> tuple[Principal, str]:
    """The principal a token was issued to and the token's id; IdentityError (never naming the token) otherwise."""
    if not token:
        raise IdentityError("no token: a governed read needs the token issued to its principal (GOVERNANCE_TOKEN, "
                            "or --token-file; governance token issue PRINCIPAL)")
    match = TOKEN.fullmatch(token.strip()) if isinstance(token, str) and token.isascii() else None
    if match is None:
        raise IdentityError("the token is malformed")
    token_id = match.group(1)
    with _store(data_dir, write=False) as records:
        record = next((r for r in records if r.get("id") == token_id), None)
    if record is None or not hmac.compare_digest(str(record.get("sha256", "")), _digest(token.strip())):
        raise IdentityError("the token is not one this platform issued")
    state = _state(record)
    if state != "active":
        raise IdentityError(f"token {token_id} is {state}")
    principal = principals(catalog).get(record.get("principal"))
    if principal is None:
        raise IdentityError(f"token {token_id} belongs to '{record.get('principal')}', which is no longer a "
                            "principal of the catalog")
    return principal, token_id
