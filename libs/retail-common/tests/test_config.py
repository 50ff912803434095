"""Configuration fails fast and names every bad variable."""

import pytest

from retail_common.config import ConfigError, ServiceSettings, load_settings


def test_every_problem_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("NATS_URL", "http://wrong:4222")
    monkeypatch.setenv("GRPC_LISTEN", "no-port")
    monkeypatch.setenv("DB_POOL_MAX", "zero")
    with pytest.raises(ConfigError) as caught:
        load_settings(ServiceSettings)
    message = str(caught.value)
    for variable in ("DATABASE_URL: is required", "NATS_URL", "GRPC_LISTEN", "DB_POOL_MAX"):
        assert variable in message


def test_valid_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/d")
    monkeypatch.setenv("GRPC_LISTEN", "0.0.0.0:0")
    monkeypatch.setenv("SERVICE_CREDENTIAL", "rk_svc_secret")
    settings = load_settings(ServiceSettings)
    assert settings.grpc_listen == "0.0.0.0:0"
    assert settings.service_credential is not None
    assert "secret" not in repr(settings)


def test_request_log_policy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/d")
    defaults = load_settings(ServiceSettings)
    assert (defaults.request_log_sample_rate, defaults.request_log_slow_ms) == (1.0, 500.0)  # every call
    monkeypatch.setenv("REQUEST_LOG_SAMPLE_RATE", "0.01")
    monkeypatch.setenv("REQUEST_LOG_SLOW_MS", "250")
    settings = load_settings(ServiceSettings)
    assert (settings.request_log_sample_rate, settings.request_log_slow_ms) == (0.01, 250.0)
    monkeypatch.setenv("REQUEST_LOG_SAMPLE_RATE", "1.5")
    with pytest.raises(ConfigError, match="REQUEST_LOG_SAMPLE_RATE"):
        load_settings(ServiceSettings)


def test_event_loop_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/d")
    assert load_settings(ServiceSettings).event_loop == "uvloop"
    monkeypatch.setenv("EVENT_LOOP", "asyncio")
    assert load_settings(ServiceSettings).event_loop == "asyncio"
    monkeypatch.setenv("EVENT_LOOP", "trio")
    with pytest.raises(ConfigError, match="EVENT_LOOP"):
        load_settings(ServiceSettings)
