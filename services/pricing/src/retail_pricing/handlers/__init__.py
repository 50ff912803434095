"""Request handlers: validate, run domain rules and repositories in one transaction, write audit and
outbox rows, return protos. The servicer only dispatches to them."""
