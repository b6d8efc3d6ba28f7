"""Thin experiment entry points: `python -m launch.<name> --help`. Each exposes `main(config)`."""
