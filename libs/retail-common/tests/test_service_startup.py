"""run_service start-up rules: refuse pending migrations when told not to migrate; fail fast on bad config."""

from __future__ import annotations


async def test_refuses_to_start_with_pending_migrations(start_service, database_url, nats_server):
    probe = await start_service(
        "retail_common.testing.probe",
        {"DATABASE_URL": database_url, "NATS_URL": nats_server.url, "MIGRATE_ON_START": "false"},
        wait=False,
    )
    assert await probe.wait_exit(60) == 1
    assert "migrations are pending" in probe.log_text()
    assert "retail.testing.probe/0001_probe_accounts" in probe.log_text()


async def test_bad_configuration_exits_2_naming_the_variable(start_service, nats_server):
    probe = await start_service(
        "retail_common.testing.probe",
        {"DATABASE_URL": "mysql://nope", "NATS_URL": nats_server.url},
        wait=False,
    )
    assert await probe.wait_exit(60) == 2
    assert "DATABASE_URL" in probe.log_text()


async def test_starts_serving_while_nats_is_down(start_service, database_url, nats_server):
    nats_server.kill()
    probe = await start_service(
        "retail_common.testing.probe", {"DATABASE_URL": database_url, "NATS_URL": nats_server.url}
    )
    assert probe.returncode is None  # SERVING without NATS: the eventing entry alone reports it
