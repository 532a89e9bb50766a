"""selector package."""
