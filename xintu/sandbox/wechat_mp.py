"""Fake WeChat official-account platform: the API our client calls, and WeChat calling our callback.

API side (what wechatpy reaches once ``API_BASE_URL`` / ``OAUTH_BASE_URL`` point here): ``/cgi-bin/token``,
``/cgi-bin/stable_token``, ``/cgi-bin/qrcode/create``, ``/connect/oauth2/authorize`` (a consent form that
302s back with a single-use code) and ``/sns/oauth2/access_token``. Every ``/cgi-bin`` call checks the
access token like WeChat does (40001 unknown, 42001 expired). ``stable_token`` behaves like WeChat's: normal
mode returns the live token until 5 minutes before it expires, then a new one while the old one stays valid
to its end (the overlap); ``force_refresh`` invalidates every earlier token at once and is allowed 20 times
a day, 30 s apart (45009 daily limit, 45011 too frequent). Menus: ``menu/create``, ``menu/get`` and
``menu/delete`` store one menu (46003 "menu no exist" when there is none).

WeChat side: ``simulate_scan`` / ``simulate_subscribe`` / ``simulate_unsubscribe`` post event XML to the
configured callback, signed with the shared token and, in safe mode, AES-encrypted with wechatpy's own
cipher, exactly as the platform does. ``/q/<ticket>`` is the "phone" page a QR code points to, so a person
can click through the scan in a browser.
"""
from __future__ import annotations

import hashlib
import html
import secrets
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from .base import Response, SandboxServer

TOKEN_TTL = 7200
OVERLAP = 300             # normal mode hands out a new token this long before the old one expires
FORCE_PER_DAY, FORCE_SPACING = 20, 30


def wechat_signature(*parts) -> str:
    return hashlib.sha1("".join(sorted(str(p) for p in parts)).encode("utf-8")).hexdigest()


class WeChatSandbox(SandboxServer):
    def __init__(self, appid, secret, token, encoding_aes_key=None, callback_url=None, **kw):
        super().__init__(**kw)
        self.appid, self.secret, self.token = appid, secret, token
        self.encoding_aes_key = encoding_aes_key
        self.callback_url = callback_url
        self.original_id = "gh_" + secrets.token_hex(6)
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}          # access_token -> expires_at
        self.token_requests = 0                      # how many times a token was minted
        self.force_times: list[float] = []           # when force_refresh minted a token
        self.refused: set[str] = set()               # refused by the APIs (40001), kept by stable_token
        self.api_calls = 0                           # /cgi-bin calls that checked a token
        self.menu: dict | None = None
        self.menu_creates = 0
        self.tickets: dict[str, dict] = {}          # ticket -> {scene, expires_at}
        self.codes: dict[str, tuple[str, float]] = {}  # oauth code -> (openid, expires_at)
        self.followers: set[str] = set()
        self.control_key: str | None = None          # set by the embedded runtime: `xintu sandbox …`
        for method, pattern, handler in [
            ("GET", "/cgi-bin/token", self._token),
            ("POST", "/cgi-bin/stable_token", self._stable_token),
            ("POST", "/cgi-bin/qrcode/create", self._qrcode_create),
            ("POST", "/cgi-bin/menu/create", self._menu_create),
            ("GET", "/cgi-bin/menu/get", self._menu_get),
            ("GET", "/cgi-bin/menu/delete", self._menu_delete),
            ("GET", "/q/(?P<ticket>[^/]+)", self._phone_page),
            ("POST", "/q/(?P<ticket>[^/]+)", self._phone_scan),
            ("GET", "/connect/oauth2/authorize", self._authorize_form),
            ("POST", "/connect/oauth2/authorize", self._authorize),
            ("GET", "/sns/oauth2/access_token", self._oauth_token),
            ("POST", "/sandbox/scan", self._control_scan),
        ]:
            self.route(method, pattern, handler)

    # -- configuration handed to our app ----------------------------------------------------------
    @property
    def api_base_url(self):
        return self.base_url + "/cgi-bin/"

    @property
    def oauth_base_url(self):
        return self.base_url + "/connect/"

    @property
    def sns_base_url(self):
        return self.base_url + "/"

    # -- access tokens ----------------------------------------------------------------------------
    def _mint(self, force=False):
        """(token, expires_in) or an errcode dict when force_refresh is over its limits."""
        with self.lock:
            now = time.time()
            live = sorted((exp, t) for t, exp in self.tokens.items() if exp > now)
            if force:
                day = [t for t in self.force_times if t > now - 86400]
                if len(day) >= FORCE_PER_DAY:
                    return {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
                if day and now - day[-1] < FORCE_SPACING:
                    return {"errcode": 45011,
                            "errmsg": "api minute-quota reach limit  mustslower  retry next minute"}
                self.force_times.append(now)
                for tok in self.tokens:  # every earlier token stops working at once
                    self.tokens[tok] = min(self.tokens[tok], now)
            elif live and live[-1][0] - now > OVERLAP:
                return live[-1][1], int(live[-1][0] - now)
            token = secrets.token_urlsafe(48)  # new; the old one (if any) stays valid until it expires
            self.tokens[token] = now + TOKEN_TTL
            self.token_requests += 1
            return token, TOKEN_TTL

    def age_tokens(self, seconds: float):
        """Move time forward for the issued tokens (their expiry comes ``seconds`` closer)."""
        with self.lock:
            for tok in self.tokens:
                self.tokens[tok] -= seconds

    def revoke(self, token: str):
        """Forget a token, as WeChat does when it was invalidated elsewhere: using it gives 40001."""
        with self.lock:
            self.tokens.pop(token, None)

    def expire_tokens(self):
        """Make every issued token stale (WeChat does this when the token is refreshed elsewhere)."""
        with self.lock:
            for tok in self.tokens:
                self.tokens[tok] = 0

    def _credentials_ok(self, appid, secret):
        return appid == self.appid and secret == self.secret

    def _token(self, req):
        if req.arg("grant_type") != "client_credential" or not self._credentials_ok(
                req.arg("appid"), req.arg("secret")):
            return Response.json({"errcode": 40125, "errmsg": "invalid appsecret"})
        with self.lock:  # the legacy endpoint mints a new token each time (not limited here)
            token = secrets.token_urlsafe(48)
            self.tokens[token] = time.time() + TOKEN_TTL
            self.token_requests += 1
        return Response.json({"access_token": token, "expires_in": TOKEN_TTL})

    def _stable_token(self, req):
        data = req.json()
        if data.get("grant_type") != "client_credential" or not self._credentials_ok(
                data.get("appid"), data.get("secret")):
            return Response.json({"errcode": 40125, "errmsg": "invalid appsecret"})
        minted = self._mint(force=bool(data.get("force_refresh")))
        if isinstance(minted, dict):
            return Response.json(minted)
        return Response.json({"access_token": minted[0], "expires_in": minted[1]})

    def _check_token(self, req):
        self.api_calls += 1
        exp = self.tokens.get(req.arg("access_token") or "")
        if exp is None or req.arg("access_token") in self.refused:
            return Response.json({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"})
        if exp <= time.time():
            return Response.json({"errcode": 42001, "errmsg": "access_token expired"})
        return None

    # -- custom menu ------------------------------------------------------------------------------
    def _menu_create(self, req):
        if (bad := self._check_token(req)) is not None:
            return bad
        try:
            buttons = req.json().get("button")
        except ValueError:
            return Response.json({"errcode": 47001, "errmsg": "data format error"})
        error = _menu_error(buttons)
        if error:
            return Response.json(error)
        self.menu = {"button": buttons}
        self.menu_creates += 1
        return Response.json({"errcode": 0, "errmsg": "ok"})

    def _menu_get(self, req):
        if (bad := self._check_token(req)) is not None:
            return bad
        if self.menu is None:
            return Response.json({"errcode": 46003, "errmsg": "menu no exist"})
        return Response.json({"menu": self.menu})

    def _menu_delete(self, req):
        if (bad := self._check_token(req)) is not None:
            return bad
        self.menu = None
        return Response.json({"errcode": 0, "errmsg": "ok"})

    # -- QR codes and the phone that scans them ---------------------------------------------------
    def _qrcode_create(self, req):
        if (bad := self._check_token(req)) is not None:
            return bad
        data = req.json()
        scene = (data.get("action_info") or {}).get("scene") or {}
        if data.get("action_name") != "QR_STR_SCENE" or not scene.get("scene_str"):
            return Response.json({"errcode": 40053, "errmsg": "invalid action info"})
        expire = min(int(data.get("expire_seconds") or 60), 2592000)
        ticket = secrets.token_urlsafe(32)
        self.tickets[ticket] = {"scene": scene["scene_str"], "expires_at": time.time() + expire}
        return Response.json({"ticket": ticket, "expire_seconds": expire,
                              "url": f"{self.base_url}/q/{ticket}"})

    def _phone_page(self, req):
        ticket = req.match["ticket"]
        if ticket not in self.tickets:
            return Response.html("<p>二维码无效</p>", status=404)
        openid = html.escape(req.headers.get("Cookie", "").partition("sandbox_openid=")[2].split(";")[0]
                             or "o" + secrets.token_hex(14))
        return Response.html(
            "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            "<title>模拟微信扫码</title><h1>模拟微信扫码</h1><form method=post>"
            f"<label>微信用户 openid <input name=openid value='{openid}'></label>"
            "<button type=submit id=scan>扫码并关注</button></form>")

    def _phone_scan(self, req):
        info = self.tickets.get(req.match["ticket"])
        openid = req.form().get("openid", "").strip()
        if info is None or not openid:
            return Response.html("<p>二维码无效</p>", status=400)
        if info["expires_at"] < time.time():
            return Response.html("<p>二维码已过期</p>", status=410)
        status, reply = self.simulate_scan(info["scene"], openid, first_follow=openid not in self.followers)
        page = (f"<!doctype html><meta charset=utf-8><p id=result>公众号回复（HTTP {status}）：</p>"
                f"<pre>{html.escape(reply)}</pre>")
        resp = Response.html(page)
        resp.headers["Set-Cookie"] = f"sandbox_openid={openid}; Path=/; SameSite=Lax"
        return resp

    def _control_scan(self, req):
        """`xintu sandbox scan`: the shell's way to make a user scan (keyed, loopback only)."""
        key = req.header("X-Sandbox-Key") or ""
        if not self.control_key or not secrets.compare_digest(key, self.control_key):
            return Response.json({"errcode": 40001, "errmsg": "sandbox control key required"}, status=403)
        data = req.json()
        scene = str(data.get("scene") or "").strip()
        if not scene:
            return Response.json({"errcode": 40053, "errmsg": "scene required"}, status=400)
        openid = str(data.get("openid") or "").strip() or "o" + secrets.token_hex(14)
        first = openid not in self.followers
        status, reply = self.simulate_scan(scene, openid, first_follow=first)
        try:   # what the user reads in WeChat: the text of the passive reply
            import xmltodict
            reply = (xmltodict.parse(reply).get("xml") or {}).get("Content") or reply
        except Exception:  # noqa: BLE001  not XML (an error page): show it as it came
            pass
        return Response.json({"openid": openid, "event": "subscribe" if first else "SCAN",
                              "callback_status": status, "reply": reply})

    # -- OAuth (snsapi_base) ----------------------------------------------------------------------
    def _authorize_form(self, req):
        if req.arg("appid") != self.appid or not req.arg("redirect_uri"):
            return Response.html("<p>appid 或 redirect_uri 无效</p>", status=400)
        openid = req.headers.get("Cookie", "").partition("sandbox_openid=")[2].split(";")[0]
        hidden = "".join(f"<input type=hidden name={k} value='{html.escape(v[0])}'>"
                         for k, v in req.query.items())
        return Response.html(
            "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
            "<title>微信授权</title><h1>模拟微信网页授权</h1><form method=post>" + hidden +
            f"<label>微信用户 openid <input name=openid value='{html.escape(openid)}'></label>"
            "<button type=submit id=allow>允许</button></form>")

    def _authorize(self, req):
        form = req.form()
        openid = form.get("openid", "").strip()
        if form.get("appid") != self.appid or not openid or not form.get("redirect_uri"):
            return Response.html("<p>授权参数无效</p>", status=400)
        return Response.redirect(self.authorize(openid, form["redirect_uri"], form.get("state", "")))

    def authorize(self, openid, redirect_uri, state=""):
        """What WeChat does when the user consents: a one-time code on the redirect URI."""
        code = secrets.token_urlsafe(24)
        self.codes[code] = (openid, time.time() + 300)
        parts = urlsplit(redirect_uri)
        query = parse_qsl(parts.query) + [("code", code), ("state", state)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _oauth_token(self, req):
        if not self._credentials_ok(req.arg("appid"), req.arg("secret")):
            return Response.json({"errcode": 40125, "errmsg": "invalid appsecret"})
        openid, exp = self.codes.pop(req.arg("code") or "", (None, 0))  # codes are single use
        if openid is None or exp < time.time():
            return Response.json({"errcode": 40029, "errmsg": "invalid code"})
        return Response.json({"access_token": secrets.token_urlsafe(32), "expires_in": 7200,
                              "refresh_token": secrets.token_urlsafe(32), "openid": openid,
                              "scope": "snsapi_base"})

    # -- acting as WeChat towards our callback ----------------------------------------------------
    def event_xml(self, openid, event, event_key="", create_time=None, ticket=""):
        create_time = create_time or int(time.time())
        extra = f"<EventKey><![CDATA[{event_key}]]></EventKey>" if event_key or event != "unsubscribe" else ""
        extra += f"<Ticket><![CDATA[{ticket}]]></Ticket>" if ticket else ""
        return (f"<xml><ToUserName><![CDATA[{self.original_id}]]></ToUserName>"
                f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime>"
                f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}</xml>")

    def deliver(self, xml, openid, encrypted=None, token=None, timestamp=None, url=None):
        """POST one event like WeChat: signature over (token, timestamp, nonce) in the query string;
        safe mode adds encrypt_type=aes and msg_signature over the ciphertext. Returns
        (status, decrypted reply text)."""
        token = token or self.token
        timestamp, nonce = str(timestamp or int(time.time())), secrets.token_hex(5)
        params = {"signature": wechat_signature(token, timestamp, nonce), "timestamp": timestamp,
                  "nonce": nonce, "openid": openid}
        encrypted = bool(self.encoding_aes_key) if encrypted is None else encrypted
        body = xml
        if encrypted:
            from wechatpy.crypto import PrpCrypto, WeChatCrypto
            crypto = WeChatCrypto(self.token, self.encoding_aes_key, self.appid)
            cipher = PrpCrypto(crypto.key).encrypt(xml, self.appid).decode()
            body = (f"<xml><ToUserName><![CDATA[{self.original_id}]]></ToUserName>"
                    f"<Encrypt><![CDATA[{cipher}]]></Encrypt></xml>")
            params.update(encrypt_type="aes", msg_signature=wechat_signature(token, timestamp, nonce, cipher))
        resp = requests.post(url or self.callback_url, params=params, data=body.encode("utf-8"),
                             headers={"Content-Type": "text/xml"}, timeout=10)
        reply = resp.text
        if encrypted and resp.ok and "<Encrypt>" in reply:
            from wechatpy.crypto import WeChatCrypto
            crypto = WeChatCrypto(self.token, self.encoding_aes_key, self.appid)
            import xmltodict
            envelope = xmltodict.parse(reply)["xml"]
            reply = crypto.decrypt_message(reply, envelope["MsgSignature"], envelope["TimeStamp"],
                                           envelope["Nonce"])
        return resp.status_code, reply

    def simulate_scan(self, scene, openid, first_follow=True, **deliver_kw):
        """A user scans a QR with ``scene``: ``subscribe`` + ``qrscene_<scene>`` on first follow,
        ``SCAN`` + ``<scene>`` for an existing follower."""
        if first_follow:
            xml = self.event_xml(openid, "subscribe", "qrscene_" + scene, ticket="sandbox")
        else:
            xml = self.event_xml(openid, "SCAN", scene, ticket="sandbox")
        result = self.deliver(xml, openid, **deliver_kw)
        if result[0] == 200:
            self.followers.add(openid)
        return result

    def simulate_subscribe(self, openid, **deliver_kw):
        result = self.deliver(self.event_xml(openid, "subscribe"), openid, **deliver_kw)
        self.followers.add(openid)
        return result

    def simulate_unsubscribe(self, openid, **deliver_kw):
        self.followers.discard(openid)
        return self.deliver(self.event_xml(openid, "unsubscribe"), openid, **deliver_kw)

    def verify_url(self, url=None, token=None):
        """The echo check WeChat makes when the callback URL is configured."""
        token = token or self.token
        timestamp, nonce, echostr = str(int(time.time())), secrets.token_hex(5), secrets.token_hex(8)
        resp = requests.get(url or self.callback_url, timeout=10, params={
            "signature": wechat_signature(token, timestamp, nonce), "timestamp": timestamp,
            "nonce": nonce, "echostr": echostr})
        return resp.status_code, resp.text, echostr


def _menu_error(buttons) -> dict | None:
    """WeChat's menu/create checks: ≤ 3 buttons, ≤ 5 sub buttons, name ≤ 16 / 60 bytes, known types."""
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return {"errcode": 40016, "errmsg": "invalid button size"}
    for button in buttons:
        if not isinstance(button, dict):
            return {"errcode": 47001, "errmsg": "data format error"}
        name, subs = str(button.get("name", "")), button.get("sub_button")
        if not name or len(name.encode("utf-8")) > 16:
            return {"errcode": 40018, "errmsg": "invalid button name size"}
        items = subs if subs else [button]
        if subs is not None and subs and (not isinstance(subs, list) or len(subs) > 5):
            return {"errcode": 40023, "errmsg": "invalid sub button size"}
        for item in items:
            if item is not button and (not item.get("name") or len(str(item["name"]).encode("utf-8")) > 60):
                return {"errcode": 40025, "errmsg": "invalid sub button name size"}
            if item.get("type") not in ("click", "view", "miniprogram", "scancode_push", "scancode_waitmsg",
                                        "pic_sysphoto", "pic_photo_or_album", "pic_weixin", "location_select",
                                        "media_id", "article_id", "article_view_limited"):
                return {"errcode": 40017, "errmsg": "invalid button type"}
            if item["type"] == "view" and not str(item.get("url", "")).startswith(("http://", "https://")):
                return {"errcode": 40055, "errmsg": "invalid button url domain"}
            if item["type"] == "click" and not item.get("key"):
                return {"errcode": 40019, "errmsg": "invalid button key size"}
    return None
