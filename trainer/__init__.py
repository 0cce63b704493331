"""Keras layers, models, training entry point, export and metrics.

Importing this package (or ``trainer.contracts.features`` / ``trainer.contracts.storage``) does not import
TensorFlow.
"""
