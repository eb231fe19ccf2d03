"""``python -m heretic_tui.cli``: the same entry point as the ``heretic-tui`` console script."""

from heretic_tui.cli.main import main

main()
