"""``python -m ref.chord`` runs a node, as ``serval-node`` does."""

from ref.chord.cli import node_main

node_main()
