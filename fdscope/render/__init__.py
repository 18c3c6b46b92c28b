"""Rendering: tables (tabulate) and JSON, separate from the data they show."""
