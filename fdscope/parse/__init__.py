"""Pure parsers: /proc text in, frozen dataclasses out. No file access here."""
