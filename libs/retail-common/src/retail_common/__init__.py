"""Shared runtime of the retail sync suite: one way to do each cross-cutting thing."""
