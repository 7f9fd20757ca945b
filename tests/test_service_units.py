"""The pieces of the service's protection on their own (no Ray): the result store, key
resolution and checking, body limits, what the clients retry."""

from __future__ import annotations

import asyncio

import pytest

from clients.retry import RetryPolicy
from serving.auth import ANONYMOUS, AuthConfigError, Authorizer, key_digest, resolve_api_keys, resolve_digests
from serving.http import BodyLimits
from serving.idempotency import CONFLICT, HIT, RUN, ResultStore, content_digest, video_digest
from serving.settings import IngressSettings


def test_store_binds_answers_to_content_and_bounds_bytes():
    async def run():
        s = ResultStore(max_bytes=100)
        assert await s.claim("k1", "d1") == (RUN, None)
        assert await s.claim("k1", "d2") == (CONFLICT, None)  # other content while in flight
        await s.put("k1", "d1", b"x" * 40)
        assert await s.claim("k1", "d1") == (HIT, b"x" * 40)
        assert await s.claim("k1", "d2") == (CONFLICT, None)
        assert (await s.claim("k2", "d"))[0] == RUN
        await s.put("k2", "d", b"y" * 40)
        assert (await s.claim("k3", "d"))[0] == RUN
        await s.put("k3", "d", b"z" * 40)  # 3 x 42 bytes > 100: the least recently used (k1) goes
        assert (await s.stats())["bytes"] <= 100
        assert (await s.claim("k1", "d2"))[0] == RUN  # forgotten: recomputed, never invented
        assert (await s.claim("k3", "d"))[0] == HIT
        assert (await s.claim("big", "d"))[0] == RUN
        await s.put("big", "d", b"b" * 1000)  # larger than the whole store: not kept
        assert (await s.claim("big", "d"))[0] == RUN

    asyncio.run(run())


def test_store_duplicates_wait_for_the_first_and_take_over_after_a_failure():
    async def run():
        s = ResultStore(max_bytes=1000, lease_s=5)
        assert (await s.claim("k", "d"))[0] == RUN
        waiter = asyncio.create_task(s.claim("k", "d"))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await s.put("k", "d", b"answer")
        assert await waiter == (HIT, b"answer")
        assert (await s.claim("f", "d"))[0] == RUN
        waiter = asyncio.create_task(s.claim("f", "d"))
        await asyncio.sleep(0.05)
        await s.release("f", "d")  # the first failed: errors are not remembered, the duplicate runs
        assert await waiter == (RUN, None)
        lease = ResultStore(max_bytes=1000, lease_s=0.1)
        assert (await lease.claim("k", "d"))[0] == RUN  # holder dies without a word
        assert (await asyncio.wait_for(lease.claim("k", "d"), 2))[0] == RUN

    asyncio.run(run())


def test_digests_cover_the_content(tmp_path):
    f = tmp_path / "v.mp4"
    f.write_bytes(b"abc")
    assert video_digest(b"abc") != video_digest(b"abd")
    before = video_digest(f)
    f.write_bytes(b"abcd")
    assert video_digest(f) != before  # size (and mtime) are part of a path's digest
    base = content_digest("score", {"prompt": "p", "sampling": None}, ["v"])
    assert base == content_digest("score", {"sampling": None, "prompt": "p"}, ["v"])
    assert base != content_digest("score", {"prompt": "p", "sampling": {"frames": 4}}, ["v"])
    assert base != content_digest("compare", {"prompt": "p", "sampling": None}, ["v"])


def test_keys_resolve_from_file_and_environment_and_never_fail_open(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# comment\nk1\n\n  k2  \n")
    env = {"LIFT_CRITIC_API_KEYS": "k3, k4,", "LIFT_CRITIC_API_KEYS_FILE": str(f)}
    assert resolve_api_keys(None, env) == ["k1", "k2", "k3", "k4"]
    assert resolve_api_keys(str(f), {}) == ["k1", "k2"]
    assert resolve_digests(str(f), {}) == sorted([key_digest("k1"), key_digest("k2")])
    assert resolve_api_keys(None, {}) == []
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    for bad in ({"LIFT_CRITIC_API_KEYS_FILE": str(tmp_path / "missing")}, {"LIFT_CRITIC_API_KEYS_FILE": str(empty)},
                {"LIFT_CRITIC_API_KEYS": " , "}):
        with pytest.raises(AuthConfigError) as e:
            resolve_api_keys(None, bad)
        assert e.value.code == "invalid_parameter"


def test_authorizer_compares_digests_and_names_callers_without_keys():
    auth = Authorizer([key_digest("alpha"), key_digest("beta")])
    a, b = auth.caller("Bearer alpha"), auth.caller("bearer beta")
    assert a and b and a != b and "alpha" not in a
    assert auth.caller(None) is None and auth.caller("Bearer gamma") is None and auth.caller("Basic alpha") is None
    assert Authorizer([]).caller(None) == ANONYMOUS


def test_plaintext_keys_in_the_serve_config_are_refused_without_echoing_them():
    with pytest.raises(ValueError) as e:
        IngressSettings(api_keys=["do-not-log-me"])
    assert "do-not-log-me" not in str(e.value)
    with pytest.raises(ValueError):
        IngressSettings(api_key_digests=["not-a-digest"])


def test_body_limits_cut_trickles_but_not_fast_uploads():
    lim = BodyLimits(limit=10_000_000, timeout_s=60, min_rate=16_384, grace_s=2.0)
    assert lim.wait_s(started=0.0, received=0, now=0.0) == 2.0  # the grace
    assert lim.wait_s(started=0.0, received=3, now=1.9) == pytest.approx(0.1)  # 1 byte/s: cut at 2 s
    assert lim.wait_s(started=0.0, received=500_000, now=1.0) == pytest.approx(500_000 / 16_384 - 1.0)
    assert lim.wait_s(started=0.0, received=9_000_000, now=59.0) == pytest.approx(1.0)  # the deadline wins


def test_retry_policy_retries_what_is_safe():
    p = RetryPolicy()
    assert p.should_retry(None, typed=False)  # connection error
    assert p.should_retry(503, typed=True) and p.should_retry(500, typed=False)
    assert p.should_retry(404, typed=False)  # a proxy's bare 404 during a redeploy
    assert p.should_retry(408, typed=True)  # the body came too slowly: the request never reached the critic
    for status in (404, 409, 413, 422, 401):
        assert not p.should_retry(status, typed=True)


def test_build_app_resolves_keys_where_it_runs_and_fails_closed(tmp_path, monkeypatch):
    from serving.app import build_app

    monkeypatch.delenv("LIFT_CRITIC_API_KEYS", raising=False)
    monkeypatch.setenv("LIFT_CRITIC_API_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(AuthConfigError):  # a named key source that cannot be read stops the deployment
        build_app({"critic": {"model": "model-free"}})
    (tmp_path / "keys").write_text("k1\n")
    monkeypatch.setenv("LIFT_CRITIC_API_KEYS_FILE", str(tmp_path / "keys"))
    app = build_app({"critic": {"model": "model-free"}, "ingress": {"api_key_digests": [key_digest("k0")]}})
    ingress_args = app._bound_deployment.init_args[1]  # what Serve hands the ingress: digests only
    assert ingress_args["api_key_digests"] == sorted([key_digest("k0"), key_digest("k1")])
    assert "k1" not in str(app._bound_deployment.init_args)
