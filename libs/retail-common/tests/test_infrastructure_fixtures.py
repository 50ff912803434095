"""The harness's own fixtures work against real servers."""

import asyncpg
import nats

from retail_common.testing import NatsServer


async def test_each_test_gets_its_own_empty_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval("select count(*) from pg_tables where schemaname = 'public'")
        assert tables == 0
    finally:
        await conn.close()


async def test_nats_server_survives_kill_and_restart_with_its_store(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="KEEP", subjects=["keep.>"])
    await js.publish("keep.one", b"1")
    await nc.close()

    nats_server.restart()

    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().stream_info("KEEP")
        assert info.state.messages == 1
    finally:
        await nc.close()


def test_kill_makes_the_port_refuse_connections(nats_server: NatsServer) -> None:
    from retail_common.testing.ports import wait_port_closed

    nats_server.kill()
    assert wait_port_closed(nats_server.port)
