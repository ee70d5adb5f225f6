"""Delivery of a stack change by pull request: branches pushed to origin and pull requests opened with gh."""
