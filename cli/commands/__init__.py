"""Click command groups, one module per subject."""
