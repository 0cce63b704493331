"""trainer/layers package."""
