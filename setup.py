"""Shim so Beam runners can ship this package to workers: ``--setup_file ./setup.py``.

Beam's stager runs ``python setup.py sdist`` and installs the result on every worker;
all metadata (name, packages, dependencies) lives in ``pyproject.toml``.
"""

from setuptools import setup

setup()
