"""Sandbox backends (Docker, bubblewrap, Slurm) and the run manager."""
