"""The errors socpipe raises on purpose.

SocpipeError
├── ConfigError        a setting or config file is wrong; the message names the key's path
│   └── SpoolCorruptError   (collectors.spool) a spool segment or its state is damaged
├── AgencyError        (socpipe.agencies) an agency id or password refused, or the broker's refusal
├── RecordError        a record cannot be decoded or fails its schema; says which and why
└── ServiceError       a local service (Kafka, Elasticsearch) did not start or answer;
                       the message names its log file
"""

from __future__ import annotations


class SocpipeError(Exception):
    """Root of socpipe's own errors."""


class ConfigError(SocpipeError):
    """A setting or config file is invalid."""


class RecordError(SocpipeError):
    """A record crossing a stage boundary cannot be decoded or validated."""


class ServiceError(SocpipeError):
    """A service did not start, or does not answer."""
