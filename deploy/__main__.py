"""``python -m deploy``: the deploy command line."""

from deploy.cli.app import main

main()
