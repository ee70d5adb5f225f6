"""One ComponentResource per file: registry, endpoint, monitoring, sandbox."""
