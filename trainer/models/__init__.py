"""trainer/models package."""
