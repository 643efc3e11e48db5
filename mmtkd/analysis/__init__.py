"""Analyses behind ``tools/analysis/*.py``: the digits probe of teacher weighting, and the
teacher-weight plot."""
