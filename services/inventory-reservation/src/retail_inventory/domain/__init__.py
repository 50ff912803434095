"""Pure inventory rules: no I/O. The repository's SQL implements the same rules set-based."""
