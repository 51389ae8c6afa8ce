"""The per-worker memory of token → session (xintu.auth.sessions): a revoke made elsewhere (another worker,
host or the CLI: here a write behind the app's back) takes effect within SESSION_CACHE_SECONDS, one made in
this process at once; the memory is bounded; 0 turns it off."""
from __future__ import annotations

import hashlib
import time

from tests.classify_fixtures import register
from xintu.auth import SessionCache, hash_token
from xintu.timeutil import utcnow

CHECK = "/api/v1/classify/batch-check-cache"


def _check(client, headers):
    return client.post(CHECK, headers=headers, json={"hashes": ["0" * 64]})


def _revoke_behind_the_back(app, headers):
    from xintu.models import ClientSession

    token_hash = hash_token(headers["Authorization"].split(" ", 1)[1])
    with app.app_context():
        assert ClientSession.update(revoked_at=utcnow(), revoked_reason="operator").where(
            ClientSession.token_hash == token_hash).execute() == 1


def test_a_revoke_made_elsewhere_takes_effect_within_the_cache_time(app):
    app.config["SESSION_CACHE_SECONDS"] = 1.0
    client = app.test_client()
    headers = register(client)
    assert _check(client, headers).status_code == 200
    _revoke_behind_the_back(app, headers)
    started = time.monotonic()
    assert _check(client, headers).status_code == 200            # still remembered by this worker
    assert time.monotonic() - started < 1.0
    time.sleep(1.1)
    late = _check(client, headers)
    assert (late.status_code, late.get_json()["error"]["code"]) == (401, "token_revoked")


def test_without_the_cache_a_revoke_elsewhere_is_seen_at_once(app):
    app.config["SESSION_CACHE_SECONDS"] = 0
    client = app.test_client()
    headers = register(client)
    assert _check(client, headers).status_code == 200
    _revoke_behind_the_back(app, headers)
    assert _check(client, headers).status_code == 401


def test_logout_in_this_process_ends_the_remembered_session_at_once(app):
    client = app.test_client()
    headers = register(client)
    assert app.config["SESSION_CACHE_SECONDS"] > 0
    assert _check(client, headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    again = _check(client, headers)
    assert (again.status_code, again.get_json()["error"]["code"]) == (401, "token_revoked")


def test_the_memory_is_bounded_and_ages_out():
    now = [0.0]
    cache = SessionCache(max_entries=3, clock=lambda: now[0])
    for i in range(5):
        cache.put(("db", hashlib.sha256(bytes([i])).hexdigest()), {"id": i})
    kept = [cache.get(("db", hashlib.sha256(bytes([i])).hexdigest()), ttl=2) for i in range(5)]
    assert kept == [None, None, {"id": 2}, {"id": 3}, {"id": 4}]    # the oldest went first
    cache.drop([3])
    assert cache.get(("db", hashlib.sha256(bytes([3])).hexdigest()), ttl=2) is None
    now[0] = 2.0
    assert cache.get(("db", hashlib.sha256(bytes([4])).hexdigest()), ttl=2) is None
