"""``python -m cgmagan.reproduce``."""

from cgmagan.reproduce.cli import main

main()
