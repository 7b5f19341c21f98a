"""Spike detection: reading series (series.py, no scipy) and the detector (detector.py)."""
