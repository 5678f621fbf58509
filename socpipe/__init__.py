"""socpipe's spine: record contracts, settings, Kafka and Elasticsearch plumbing, the CLI."""

from socpipe.errors import ConfigError, RecordError, ServiceError, SocpipeError

__version__ = "0.1.0"

__all__ = ["ConfigError", "RecordError", "ServiceError", "SocpipeError", "__version__"]
