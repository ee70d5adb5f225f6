"""Fixtures for tests against the AWS emulator (moto's server over HTTP on loopback). Being written."""
