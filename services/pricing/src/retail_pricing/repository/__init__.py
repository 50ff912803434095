"""All SQL of the pricing service. Functions take a connection (usually inside the caller's transaction)."""
