"""``python -m mirror``: the mirror command line."""

from mirror.cli.app import main

main()
