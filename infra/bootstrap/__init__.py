"""The bootstrap stack: the AWS and GitHub-facing setup a fork needs before its first stage stack (see program.py)."""
