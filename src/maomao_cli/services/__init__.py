"""Core services: registry, runs, schedules, worker, spikes, datasets. No Typer, no Rich."""
