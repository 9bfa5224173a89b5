"""The README's demo (``scripts/demo.sh`` runs ``python -m demo.run``) and its data."""
