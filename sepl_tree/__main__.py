"""``python -m sepl_tree`` is the ``sepl-tree`` command."""

from sepl_tree.cli import main

main()
