"""Local mode's AWS emulator: starting it and creating what the stacks declare (bootstrap)."""
