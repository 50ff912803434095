"""Test support for the gateway's own tests and benchmarks (not used by the service)."""

from retail_channel_gateway.testing.fake_marketplace import FakeMarketplace, Mode

__all__ = ["FakeMarketplace", "Mode"]
