"""Parsers from each source's format to ECS fragments; ``base`` says how to write one and
``registry`` which the normalizer uses."""
