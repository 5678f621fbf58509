"""``python -m socpipe`` runs the CLI."""

from socpipe.cli import main

main()
