"""Each agency's identity on the SOC's Kafka: a SCRAM-SHA-512 user and one raw topic.

An agency ``so-noi-vu`` gets the user ``so-noi-vu`` and the topic ``<kafka.topics.raw>.so-noi-vu``
(``soc.raw.so-noi-vu``). Its ACLs allow WRITE and DESCRIBE on that topic (a literal pattern) and
nothing else: no READ, no other agency's topic, not ``soc.raw`` nor ``soc.events``. With
``allow.everyone.if.no.acl.found=false`` anything not granted is refused, so a stolen collector
credential can only add records to its own agency's topic, and the detectors check that every
record there claims that agency.

These functions speak to the broker with ``settings`` (the SOC's own, super-user connection) and
are idempotent: provisioning twice leaves the same state, revoking twice is harmless. Passwords
are sent to the broker only as SCRAM salted hashes and never logged.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka.errors import KafkaError, NoError, TopicAlreadyExistsError

from socpipe.errors import SocpipeError
from socpipe.kafka import make_admin, topic_configs
from socpipe.settings import KafkaSettings, TopicSpec

log = logging.getLogger(__name__)

# The pattern of AgencySettings.id: also a valid Kafka topic suffix and SCRAM user name.
AGENCY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
MIN_PASSWORD_LENGTH = 16
MECHANISM = ScramMechanism.SCRAM_SHA_512
# PBKDF2 rounds of the stored credential; Kafka accepts 4096 to 16384 for SCRAM-SHA-512.
SCRAM_ITERATIONS = 8192
AGENCY_OPERATIONS = (ACLOperation.WRITE, ACLOperation.DESCRIBE)


class AgencyError(SocpipeError):
    """An agency id or password is refused, or the broker refused a change to an agency."""


@dataclass(frozen=True, order=True)
class Grant:
    """One ACL of a principal, as the broker holds it."""

    resource_type: str
    resource: str
    pattern: str
    operation: str
    permission: str
    host: str

    @classmethod
    def of(cls, acl: Any) -> Grant:
        pattern = acl.resource_pattern
        return cls(
            resource_type=pattern.resource_type.name,
            resource=pattern.resource_name,
            pattern=pattern.pattern_type.name,
            operation=acl.operation.name,
            permission=acl.permission_type.name,
            host=acl.host,
        )

    def __str__(self) -> str:
        where = "" if self.host == "*" else f" from {self.host}"
        kind = "" if self.pattern == "LITERAL" else f" ({self.pattern.lower()})"
        return (
            f"{self.permission} {self.operation} on {self.resource_type} {self.resource}"
            f"{kind}{where}"
        )


@dataclass(frozen=True)
class ProvisionResult:
    """What ``provision_agency`` found and did."""

    agency_id: str
    principal: str
    topic: str
    topic_created: bool
    credential: Literal["created", "updated"]
    grants_added: tuple[Grant, ...]
    # Grants the principal held beyond its own topic's WRITE and DESCRIBE, now removed.
    grants_removed: tuple[Grant, ...]


@dataclass(frozen=True)
class RevokeResult:
    """What ``revoke_agency`` removed."""

    agency_id: str
    credential_removed: bool
    grants_removed: tuple[Grant, ...]


@dataclass(frozen=True)
class AgencyAccess:
    """A Kafka user as ``describe_agencies`` sees it: its SCRAM mechanisms and its grants."""

    user: str
    mechanisms: tuple[str, ...]
    grants: tuple[Grant, ...]


def agency_topic(settings: KafkaSettings, agency_id: str) -> str:
    """The raw topic an agency writes: ``<kafka.topics.raw>.<agency id>``."""
    return f"{settings.topics.raw}.{check_agency_id(agency_id)}"


def check_agency_id(agency_id: str) -> str:
    """``agency_id`` if it is a valid agency id, else AgencyError saying what one looks like."""
    if not AGENCY_ID.fullmatch(agency_id):
        raise AgencyError(
            f"invalid agency id {agency_id!r}: 2 to 63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit (as agency.id)"
        )
    return agency_id


def check_password(password: str) -> None:
    """AgencyError unless ``password`` is usable as an agency's SCRAM password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AgencyError(f"an agency password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password != password.strip():
        # A password file is read stripped (kafka.sasl_password_file): it would never match.
        raise AgencyError("an agency password must not begin or end with whitespace")


def generate_password() -> str:
    """A new random agency password (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def principal(agency_id: str) -> str:
    """The Kafka principal of an agency's SCRAM user."""
    return f"User:{agency_id}"


def provision_agency(
    settings: KafkaSettings,
    agency_id: str,
    password: str,
    *,
    raw_spec: TopicSpec | None = None,
) -> ProvisionResult:
    """Give ``agency_id`` its credential, its raw topic and exactly its two grants. Idempotent;
    run again with a new password to change the password."""
    check_agency_id(agency_id)
    check_password(password)
    topic = agency_topic(settings, agency_id)
    user = principal(agency_id)
    spec = raw_spec or settings.topic_specs["raw"]
    admin = make_admin(settings)
    try:
        existed = bool(_mechanisms(admin, agency_id))
        upsert = UserScramCredentialUpsertion(
            agency_id, MECHANISM, password, iterations=SCRAM_ITERATIONS
        )
        _check_alteration(admin.alter_user_scram_credentials([upsert]), agency_id, "set")
        topic_created = _create_topic(admin, topic, spec)
        wanted = {_agency_acl(agency_id, topic, op) for op in AGENCY_OPERATIONS}
        held = _acls_of(admin, user)
        missing = sorted(wanted - held, key=Grant.of)
        if missing:
            result = admin.create_acls(missing)
            if result["failed"]:
                raise AgencyError(
                    f"the broker refused ACLs of agency {agency_id}: "
                    + ", ".join(str(error) for error in result["failed"])
                )
        extra = sorted(held - wanted, key=Grant.of)
        removed = _delete(admin, extra) if extra else ()
        for grant in removed:
            log.warning("agency %s held %s: removed", agency_id, grant)
    except KafkaError as exc:
        raise AgencyError(f"cannot provision agency {agency_id}: {exc}") from exc
    finally:
        admin.close()
    log.info(
        "agency %s: credential %s, topic %s%s",
        agency_id,
        "updated" if existed else "created",
        topic,
        " (created)" if topic_created else "",
    )
    return ProvisionResult(
        agency_id=agency_id,
        principal=user,
        topic=topic,
        topic_created=topic_created,
        credential="updated" if existed else "created",
        grants_added=tuple(Grant.of(acl) for acl in missing),
        grants_removed=removed,
    )


def revoke_agency(settings: KafkaSettings, agency_id: str) -> RevokeResult:
    """Remove an agency's grants and credential; its topic and the records in it stay."""
    check_agency_id(agency_id)
    admin = make_admin(settings)
    try:
        # One filter for all of the user's ACLs: the controller matches it against its own,
        # current state, where a listing from the broker may lag a grant made just before.
        removed = _delete(admin, [_acl_filter(principal(agency_id))])
        mechanisms = _mechanisms(admin, agency_id)
        if mechanisms:
            deletions = [UserScramCredentialDeletion(agency_id, m) for m in mechanisms]
            _check_alteration(admin.alter_user_scram_credentials(deletions), agency_id, "delete")
    except KafkaError as exc:
        raise AgencyError(f"cannot revoke agency {agency_id}: {exc}") from exc
    finally:
        admin.close()
    log.info(
        "agency %s revoked: %d grants, credential %s", agency_id, len(removed), bool(mechanisms)
    )
    return RevokeResult(
        agency_id=agency_id, credential_removed=bool(mechanisms), grants_removed=removed
    )


def describe_agencies(settings: KafkaSettings) -> list[AgencyAccess]:
    """Every user with a SCRAM credential or a grant, with both; sorted by user."""
    admin = make_admin(settings)
    try:
        credentials = admin.describe_user_scram_credentials()
        acls = _acls_of(admin, None)
    except KafkaError as exc:
        raise AgencyError(f"cannot describe the agencies' access: {exc}") from exc
    finally:
        admin.close()
    mechanisms: dict[str, tuple[str, ...]] = {
        user: tuple(sorted(info["mechanism"].name for info in found["credential_infos"]))
        for user, found in credentials.items()
        if found["error"] is None
    }
    grants: dict[str, list[Grant]] = {}
    for acl in acls:
        if acl.principal.startswith("User:"):
            grants.setdefault(acl.principal.removeprefix("User:"), []).append(Grant.of(acl))
    return [
        AgencyAccess(
            user=user,
            mechanisms=mechanisms.get(user, ()),
            grants=tuple(sorted(grants.get(user, []))),
        )
        for user in sorted(set(mechanisms) | set(grants))
    ]


# --- with an admin client -------------------------------------------------------------------


def _agency_acl(agency_id: str, topic: str, operation: ACLOperation) -> Any:
    return ACL(
        principal=principal(agency_id),
        host="*",
        operation=operation,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL),
    )


def _acl_filter(user: str | None) -> Any:
    """Every ACL of ``user`` (a principal), or of everyone for None, on any resource."""
    return ACLFilter(
        principal=user,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )


def _acls_of(admin: KafkaAdminClient, user: str | None) -> set[Any]:
    """The ACLs of ``user`` (a principal), or of everyone for None, on any resource."""
    found, error = admin.describe_acls(_acl_filter(user))
    if error is not NoError:
        raise AgencyError(f"cannot list the ACLs of {user or 'every user'}: {error}")
    return set(found)


def _delete(admin: KafkaAdminClient, filters: Iterable[Any]) -> tuple[Grant, ...]:
    """Delete the ACLs matching ``filters`` (an ACL is a filter matching itself); the grants
    removed."""
    results = admin.delete_acls(list(filters))
    removed: list[Grant] = []
    for acl_filter, matched, error in results:
        if error is not NoError:
            raise AgencyError(f"the broker refused to delete the ACLs {acl_filter}: {error}")
        removed.extend(Grant.of(acl) for acl in matched)
    return tuple(sorted(set(removed)))


def _mechanisms(admin: KafkaAdminClient, user: str) -> list[ScramMechanism]:
    """The SCRAM mechanisms ``user`` has a credential for (none for an unknown user)."""
    found = admin.describe_user_scram_credentials([user]).get(user)
    if found is None or found["error"] is not None:
        return []
    return [info["mechanism"] for info in found["credential_infos"]]


def _check_alteration(results: dict[str, str | None], agency_id: str, verb: str) -> None:
    error = results.get(agency_id)
    if error:
        raise AgencyError(f"the broker refused to {verb} the credential of {agency_id}: {error}")


def _create_topic(admin: KafkaAdminClient, topic: str, spec: TopicSpec) -> bool:
    """Create ``topic`` with ``spec`` unless it exists; True if this call created it."""
    if topic in set(admin.list_topics()):
        return False
    try:
        admin.create_topics(
            {
                topic: {
                    "num_partitions": spec.partitions,
                    "replication_factor": spec.replication_factor,
                    "configs": topic_configs(spec),
                }
            },
            wait_for_metadata=True,
        )
    except TopicAlreadyExistsError:
        return False  # another process made it since we listed
    return True
