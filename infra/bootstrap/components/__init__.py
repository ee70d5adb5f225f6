"""The bootstrap stack's components, one ComponentResource per file."""
