"""Pure pricing rules: no I/O, no gRPC, no SQL. Unit-tested on their own."""
