"""``python -m iconograph`` runs the command line."""

from iconograph.cli import main

main()
