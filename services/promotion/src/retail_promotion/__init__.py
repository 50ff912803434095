"""Promotion service: campaigns, promotions, evaluation, redemptions, guardrails, deployment ledger."""
