"""Integrations of siamcl with other frameworks.

``siamcl.integrations.avalanche``: :class:`SiameseStrategy`, :func:`energy_metrics` and stream
conversions for the Avalanche continual-learning library (imported on demand, since
Avalanche is a heavy import).
"""
