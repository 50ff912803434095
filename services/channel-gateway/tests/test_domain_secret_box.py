"""Webhook secrets at rest (pure): sealing, key rotation, legacy clear rows, tampering, configuration."""

from __future__ import annotations

import base64

import pytest

from retail_channel_gateway.domain.secret_box import MAGIC, SecretBox, SecretBoxError, parse_keyring
from retail_channel_gateway.service import GatewaySettings
from retail_common.config import ConfigError, load_settings

K1, K2 = bytes(range(32)), bytes(range(1, 33))
SECRET = b"whsec-Xy9_very-secret-value"


def test_sealed_bytes_are_not_the_secret_and_open_to_it() -> None:
    box = SecretBox("k1", {"k1": K1})
    sealed = box.seal("web", SECRET)
    assert sealed.startswith(MAGIC)
    assert SECRET not in sealed
    assert box.seal("web", SECRET) != sealed  # a fresh nonce each time
    assert box.open("web", sealed) == (SECRET, False)


def test_a_sealed_secret_is_bound_to_its_channel_and_detects_tampering() -> None:
    box = SecretBox("k1", {"k1": K1})
    sealed = box.seal("web", SECRET)
    with pytest.raises(SecretBoxError, match="does not authenticate"):
        box.open("mkt", sealed)  # copied onto another channel's row
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SecretBoxError, match="does not authenticate"):
        box.open("web", flipped)
    with pytest.raises(SecretBoxError, match="truncated"):
        box.open("web", sealed[: len(MAGIC) + 5])


def test_rotation_reads_previous_keys_and_asks_for_a_reseal() -> None:
    old = SecretBox("k1", {"k1": K1}).seal("web", SECRET)
    rotated = SecretBox("k2", {"k2": K2, "k1": K1})
    assert rotated.open("web", old) == (SECRET, True)
    assert rotated.open("web", rotated.seal("web", SECRET)) == (SECRET, False)
    with pytest.raises(SecretBoxError, match="key id 'k1'"):
        SecretBox("k2", {"k2": K2}).open("web", old)  # the old key was dropped too early


def test_a_legacy_clear_row_is_read_as_is_and_asks_for_a_reseal() -> None:
    assert SecretBox("k1", {"k1": K1}).open("web", SECRET) == (SECRET, True)


def test_keyring_syntax() -> None:
    b64 = base64.b64encode(K1).decode()
    assert parse_keyring(f"a:{b64}, b:{b64}") == {"a": K1, "b": K1}
    assert parse_keyring("") == {}
    with pytest.raises(ValueError, match="listed twice"):
        parse_keyring(f"a:{b64},a:{b64}")
    with pytest.raises(ValueError, match="32 bytes"):
        parse_keyring(f"a:{base64.b64encode(b'short').decode()}")
    with pytest.raises(ValueError, match="<key id>:<base64 key>"):
        parse_keyring(b64)


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("WEBHOOK_SECRETS_KEY", "WEBHOOK_SECRETS_KEY_ID", "WEBHOOK_SECRETS_PREVIOUS_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x")
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_configuration_is_validated_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch)
    with pytest.raises(ConfigError, match="WEBHOOK_SECRETS_KEY: is required"):
        load_settings(GatewaySettings)
    _env(monkeypatch, WEBHOOK_SECRETS_KEY="bm90LWEta2V5")
    with pytest.raises(ConfigError, match=r"WEBHOOK_SECRETS_KEY: .*32 bytes"):
        load_settings(GatewaySettings)
    good = base64.b64encode(K2).decode()
    _env(monkeypatch, WEBHOOK_SECRETS_KEY=good, WEBHOOK_SECRETS_KEY_ID="k2",
         WEBHOOK_SECRETS_PREVIOUS_KEYS=f"k2:{good}")  # fmt: skip
    with pytest.raises(ConfigError, match="also listed"):
        load_settings(GatewaySettings)
    _env(monkeypatch, WEBHOOK_SECRETS_KEY=good, WEBHOOK_SECRETS_KEY_ID="k2",
         WEBHOOK_SECRETS_PREVIOUS_KEYS=f"k1:{base64.b64encode(K1).decode()}")  # fmt: skip
    box = load_settings(GatewaySettings).secret_box()
    assert box.current_key_id == "k2"
    assert box.open("web", SecretBox("k1", {"k1": K1}).seal("web", SECRET)) == (SECRET, True)
