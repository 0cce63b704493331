"""Beam transforms and jobs: event schema, data sources, feature statistics.

Importing this package is cheap: no Beam import happens until a job module is used.
"""
