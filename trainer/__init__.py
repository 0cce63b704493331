"""Keras layers, models, training entry point, export and metrics.

Importing this package (or ``trainer.features`` / ``trainer.storage``) does not import
TensorFlow.
"""
