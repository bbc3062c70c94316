"""Reusable item pipeline stages, listed in ``config.yaml`` as ``"pipelines.MODULE:Class"``."""
