"""Logins: hashed passwords, signed sessions that expire, agents limited to their own topic."""

import pytest

from callflow.api.accounts import (
    AccountError,
    SessionAuth,
    SessionSigner,
    check_password,
    hash_password,
)

TOKEN = "deployment-token-0123456789"


def test_password_hash_round_trip_and_salting() -> None:
    stored = hash_password("correct horse")
    assert check_password("correct horse", stored)
    assert not check_password("wrong horse", stored)
    assert hash_password("correct horse") != stored  # salted
    assert not check_password("x", "garbage")
    with pytest.raises(AccountError):
        hash_password("short")


def test_session_token_is_signed_and_expires() -> None:
    signer = SessionSigner(TOKEN, ttl_s=60)
    token = signer.issue("1001", "agent", "1001", now=1000)
    claims = signer.verify(token, now=1030)
    assert claims is not None and claims.agent_id == "1001" and claims.role == "agent"
    assert signer.verify(token, now=1061) is None
    body, sig = token.split(".", 1)[1].split(".")
    assert signer.verify(f"s1.{body}.{sig[:-2]}AA", now=1030) is None
    assert SessionSigner("another-deployment-secret").verify(token, now=1030) is None


def test_agents_see_only_their_own_topic_supervisors_everything() -> None:
    signer = SessionSigner(TOKEN)
    auth = SessionAuth(TOKEN, signer)
    agent = auth.authenticate(signer.issue("1001", "agent", "1001"))
    assert agent is not None and agent.may_see("agent:1001")
    assert not agent.may_see("agent:1002") and not agent.may_see("board")
    boss = auth.authenticate(signer.issue("sup", "supervisor", None))
    assert boss is not None and boss.may_see("board") and boss.may_see("agent:1002")
    deployment = auth.authenticate(TOKEN)
    assert deployment is not None and deployment.role == "supervisor"
    assert auth.authenticate("s1.not.valid") is None
    assert auth.authenticate(None) is None
