"""Local users: names, argon2id password hashes, roles, agencies, kept in Elasticsearch.

``socpipe users add|passwd|list`` creates the first admin; the API signs users in with
:meth:`UserStore.verify` (a hash in the old parameters is upgraded on the next sign-in). A
password never leaves this module in clear and is never logged; a wrong password and an unknown
user cost the same time (a dummy hash is verified for unknown users).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from elasticsearch import ConflictError, Elasticsearch, NotFoundError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from socpipe.errors import ConfigError
from socpipe.records import utcnow
from socpipe.settings import SCOPED_ROLES, Language, Role

_HASHER: Final = PasswordHasher()  # argon2id with argon2-cffi's current defaults
_DUMMY: Final = _HASHER.hash("not a password: only to spend the time of a real check")
MIN_PASSWORD: Final = 12
USERNAME_PATTERN: Final = r"^[a-z0-9][a-z0-9._@-]{1,63}$"


class User(BaseModel):
    """A local user, as stored."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    password_hash: str
    role: Role
    agency: str | None = None
    disabled: bool = False
    language: Language = "vi"
    created: AwareDatetime
    updated: AwareDatetime


def check_password(password: str) -> None:
    """Refuse a password too short to keep (ConfigError says why)."""
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"a password needs at least {MIN_PASSWORD} characters")


def _checked(role: Role, agency: str | None) -> None:
    if role in SCOPED_ROLES and not agency:
        raise ConfigError(f"a {role.value} user needs an agency")
    if role not in SCOPED_ROLES and agency:
        raise ConfigError(f"a {role.value} user is not confined to an agency")


class UserStore(ABC):
    """Where users live; implement ``_get``, ``_put`` (create only when ``create``) and
    ``list``."""

    def add(self, username: str, password: str, role: Role, agency: str | None = None) -> User:
        """A new user; ConfigError when the name is taken or the password too short."""
        check_password(password)
        _checked(role, agency)
        now = utcnow()
        user = User(
            username=username,
            password_hash=_HASHER.hash(password),
            role=role,
            agency=agency,
            created=now,
            updated=now,
        )
        self._put(user, create=True)
        return user

    def set_password(self, username: str, password: str) -> User:
        """A new password for an existing user."""
        check_password(password)
        user = self.get(username)
        if user is None:
            raise ConfigError(f"no user {username!r}")
        changed = user.model_copy(
            update={"password_hash": _HASHER.hash(password), "updated": utcnow()}
        )
        self._put(changed, create=False)
        return changed

    def update(self, username: str, **changes: Any) -> User:
        """Change role, agency, disabled or language."""
        user = self.get(username)
        if user is None:
            raise ConfigError(f"no user {username!r}")
        changed = User.model_validate(user.model_dump() | changes | {"updated": utcnow()})
        _checked(changed.role, changed.agency)
        self._put(changed, create=False)
        return changed

    def get(self, username: str) -> User | None:
        """The user, or None."""
        return self._get(username)

    def verify(self, username: str, password: str) -> User | None:
        """The enabled user whose password this is, else None (in the same time either way)."""
        user = self._get(username)
        try:
            _HASHER.verify(user.password_hash if user is not None else _DUMMY, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _HASHER.check_needs_rehash(user.password_hash):
            user = user.model_copy(update={"password_hash": _HASHER.hash(password)})
            self._put(user, create=False)
        return user

    @abstractmethod
    def _get(self, username: str) -> User | None: ...

    @abstractmethod
    def _put(self, user: User, *, create: bool) -> None: ...

    @abstractmethod
    def list(self) -> list[User]:
        """Every user, by name."""

    def ensure_ready(self) -> None:  # noqa: B027 (most stores need nothing)
        """Create what the store needs (idempotent)."""


class InMemoryUserStore(UserStore):
    """The test double."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    def _get(self, username: str) -> User | None:
        return self.users.get(username)

    def _put(self, user: User, *, create: bool) -> None:
        if create and user.username in self.users:
            raise ConfigError(f"user {user.username!r} exists")
        self.users[user.username] = user

    def list(self) -> list[User]:
        return [self.users[name] for name in sorted(self.users)]


_KEYWORD: Final = {"type": "keyword"}
USER_MAPPING: Final = {
    "dynamic": "strict",
    "properties": {
        "username": _KEYWORD,
        "password_hash": {"type": "keyword", "index": False, "doc_values": False},
        "role": _KEYWORD,
        "agency": _KEYWORD,
        "disabled": {"type": "boolean"},
        "language": _KEYWORD,
        "created": {"type": "date"},
        "updated": {"type": "date"},
    },
}


class ElasticsearchUserStore(UserStore):
    """Users in the index ``<prefix>-users``, one document per user named by its username."""

    def __init__(self, client: Elasticsearch, prefix: str) -> None:
        self.client = client
        self.index = f"{prefix}-users"

    def ensure_ready(self) -> None:
        if not self.client.indices.exists(index=self.index):
            try:
                self.client.indices.create(
                    index=self.index,
                    mappings=USER_MAPPING,
                    settings={"number_of_shards": 1, "number_of_replicas": 0},
                )
            except Exception as error:  # created meanwhile by another process
                if not self.client.indices.exists(index=self.index):
                    raise error

    def _get(self, username: str) -> User | None:
        try:
            found = self.client.get(index=self.index, id=username)
        except NotFoundError:
            return None
        return User.model_validate(found["_source"])

    def _put(self, user: User, *, create: bool) -> None:
        document = user.model_dump(mode="json")
        try:
            self.client.index(
                index=self.index,
                id=user.username,
                document=document,
                op_type="create" if create else "index",
                refresh="wait_for",
            )
        except ConflictError as error:
            raise ConfigError(f"user {user.username!r} exists") from error

    def list(self) -> list[User]:
        try:
            hits = self.client.search(
                index=self.index, size=10_000, sort=[{"username": "asc"}], query={"match_all": {}}
            )["hits"]["hits"]
        except NotFoundError:
            return []
        return [User.model_validate(hit["_source"]) for hit in hits]


__all__ = [
    "MIN_PASSWORD",
    "ElasticsearchUserStore",
    "InMemoryUserStore",
    "User",
    "UserStore",
    "check_password",
]
