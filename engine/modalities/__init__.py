"""Decoding and validating caller inputs."""
