"""Token hygiene: normal-mode stable_token first, force_refresh only for a token it hands back rejected,
at most once per 30 s across workers; one retry of our own. The sandbox enforces WeChat's limits."""
import pytest
import requests
from wechatpy.exceptions import WeChatClientException

from xintu.errors import Unavailable
from xintu.models import WechatToken
from xintu.sandbox.wechat_mp import WeChatSandbox
from xintu.wechat import official_account
from xintu.wechat.client import StableTokenClient

APPID, SECRET = "wx00000000000000aa", "s" * 32


@pytest.fixture
def mp():
    with WeChatSandbox(APPID, SECRET, "token") as sandbox:
        yield sandbox


def _stable(mp, force=False):
    return requests.post(mp.api_base_url + "stable_token", timeout=5, json={
        "grant_type": "client_credential", "appid": mp.appid, "secret": mp.secret,
        "force_refresh": force}).json()


def _qr(client):
    return client.qrcode.create({"expire_seconds": 60, "action_name": "QR_STR_SCENE",
                                 "action_info": {"scene": {"scene_str": "t"}}})


def test_sandbox_normal_mode_renews_5_minutes_early_and_keeps_the_old_token_valid(mp):
    first = _stable(mp)["access_token"]
    assert _stable(mp)["access_token"] == first
    mp.age_tokens(7200 - 299)  # inside the last 5 minutes
    second = _stable(mp)
    assert second["access_token"] != first and second["expires_in"] == 7200
    client = StableTokenClient(APPID, SECRET, api_base_url=mp.api_base_url)
    client.session.set(client.access_token_key, first)  # the old token still works in the overlap
    assert _qr(client)["ticket"] and mp.token_requests == 2


def test_sandbox_force_refresh_invalidates_old_tokens_and_is_limited(mp):
    old = _stable(mp)["access_token"]
    forced = _stable(mp, force=True)
    assert forced["access_token"] != old
    client = StableTokenClient(APPID, SECRET, api_base_url=mp.api_base_url)
    with pytest.raises(WeChatClientException) as err:
        client.post("qrcode/create", params={"access_token": old}, data={"action_name": "QR_STR_SCENE"})
    assert err.value.errcode == 42001
    assert _stable(mp, force=True)["errcode"] == 45011  # 30 s apart
    mp.force_times = [mp.force_times[0] - 40 - i * 60 for i in range(20)]
    assert _stable(mp, force=True)["errcode"] == 45009  # 20 a day


def test_a_token_refreshed_elsewhere_is_replaced_in_normal_mode(member_stack):
    stack, mp = member_stack, member_stack.sandbox.mp
    with stack.in_app():
        client = official_account(stack.app.config)
        old = client.access_token
        mp.age_tokens(7200 - 200)  # another holder already got the overlap's new token…
        newer = _stable(mp)["access_token"]
        mp.revoke(old)              # …and the old one is gone
        assert _qr(client)["ticket"]
        assert WechatToken.get().access_token == newer and mp.force_times == []


def test_force_only_when_stable_token_hands_back_the_rejected_token_and_once_per_30_s(member_stack):
    stack, mp = member_stack, member_stack.sandbox.mp
    with stack.in_app():
        client = official_account(stack.app.config)
        bad = client.access_token
        mp.refused.add(bad)  # WeChat refuses it, stable_token (normal mode) would still return it
        assert _qr(client)["ticket"]
        assert len(mp.force_times) == 1 and WechatToken.get().access_token != bad
        assert WechatToken.get().forced_at is not None
        mp.refused.add(WechatToken.get().access_token)
        calls = mp.api_calls
        with pytest.raises(Unavailable) as err:   # another worker, 1 s later: no second force
            _qr(official_account(stack.app.config))
        assert err.value.code == "wechat_token_rejected" and len(mp.force_times) == 1
        assert mp.api_calls == calls + 1


def test_one_retry_of_our_own_then_the_error(member_stack):
    stack, mp = member_stack, member_stack.sandbox.mp
    with stack.in_app():
        client = official_account(stack.app.config)
        assert client.auto_retry is False
        assert client.access_token   # fetched once here

        class EveryToken(set):
            def __contains__(self, token):
                return True

        mp.refused = EveryToken()  # WeChat refuses whatever we send
        calls = mp.api_calls
        with pytest.raises(WeChatClientException) as err:
            _qr(client)
        assert err.value.errcode == 40001 and mp.api_calls - calls == 2 and len(mp.force_times) == 1
