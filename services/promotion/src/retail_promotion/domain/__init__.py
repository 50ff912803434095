"""Pure domain of the promotion service: no I/O."""
