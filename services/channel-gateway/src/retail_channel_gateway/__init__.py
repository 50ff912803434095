"""Channel gateway: channel registry, façade, governed delivery and delivery ledger (issue 7)."""
