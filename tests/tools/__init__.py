"""Test tooling that is not part of any library module (the golden-file generator)."""
