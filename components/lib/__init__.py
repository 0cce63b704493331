"""components/lib package."""
