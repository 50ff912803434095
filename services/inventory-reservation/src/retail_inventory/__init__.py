"""Inventory-reservation service: system of record for locations, stock and reservations."""
