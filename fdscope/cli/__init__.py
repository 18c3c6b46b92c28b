"""Thin click commands: one module per command, each exposing `command`."""
