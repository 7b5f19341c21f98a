"""Spike detection: reading series (series.py, no scipy) and the detector (detector.py, with
robust.py for the scores, judge.py for the verdicts and seasonal.py for daily patterns)."""
