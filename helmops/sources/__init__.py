"""helmops."""
