"""``python -m dimple_stats`` runs the command line."""

from dimple_stats.cli import main

main()
