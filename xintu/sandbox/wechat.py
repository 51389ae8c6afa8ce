"""WeChat official-account and WeChat Pay v3 fakes together, for tests and the offline embedded mode.

``start(public_base_url)`` brings both up with fresh keys and returns a :class:`Sandbox` whose ``config``
is what the app needs to reach them (base URLs, app id, keys).  ``start_embedded(config)`` is the hook
``xintu serve`` calls when SANDBOX is on: same thing, plus the demo page that plays the PC client, so a
browser can click through QR → scan → H5 member page → buy → pay without any network.
"""
from __future__ import annotations

import atexit
import secrets
import shutil
import tempfile
from dataclasses import dataclass

from .keys import apiv3_key, encoding_aes_key, rsa_keypair, serial_no
from .wechat_mp import WeChatSandbox
from .wechat_pay import PaySandbox

_running: list[Sandbox] = []   # embedded sandboxes live as long as the process


@dataclass
class Sandbox:
    mp: WeChatSandbox
    pay: PaySandbox
    config: dict

    def stop(self):
        self.mp.stop()
        self.pay.stop()

    def verify_config(self, mode: str, cert_dir: str | None = None) -> dict:
        """The settings that verify this fake WeChat Pay in ``mode`` (public_key, certificate, both)."""
        keyed = mode != "certificate"
        config = {"WECHATPAY_VERIFY_MODE": mode,
                  "WECHATPAY_PUBLIC_KEY": self.pay.platform_public_key if keyed else None,
                  "WECHATPAY_PUBLIC_KEY_ID": self.pay.public_key_id if keyed else None}
        if cert_dir:
            config["WECHATPAY_CERT_DIR"] = str(cert_dir)
        return config


def start(public_base_url: str, *, encrypted=True, host="127.0.0.1") -> Sandbox:
    appid = "wx" + secrets.token_hex(8)
    secret, token = secrets.token_hex(16), secrets.token_hex(8)
    aes_key = encoding_aes_key() if encrypted else None
    merchant_private, merchant_public = rsa_keypair()
    mchid, v3key, serial = str(1900000000 + secrets.randbelow(99999)), apiv3_key(), serial_no()
    app_base = public_base_url.rstrip("/")
    mp = WeChatSandbox(appid, secret, token, encoding_aes_key=aes_key,
                       callback_url=app_base + "/wechat/callback", host=host).start()
    pay = PaySandbox(mchid, appid, v3key, merchant_public, host=host).start()
    config = {
        "WECHAT_APP_ID": appid, "WECHAT_APP_SECRET": secret, "WECHAT_TOKEN": token, "WECHAT_AES_KEY": aes_key,
        "WECHAT_API_BASE_URL": mp.base_url + "/", "WECHAT_OAUTH_BASE_URL": mp.oauth_base_url,
        "WECHATPAY_MCHID": mchid, "WECHATPAY_PRIVATE_KEY": merchant_private, "WECHATPAY_CERT_SERIAL_NO": serial,
        "WECHATPAY_APIV3_KEY": v3key, "WECHATPAY_PUBLIC_KEY": pay.platform_public_key,
        "WECHATPAY_PUBLIC_KEY_ID": pay.public_key_id, "WECHATPAY_VERIFY_MODE": "public_key",
        "WECHATPAY_BASE_URL": pay.base_url,
        "SANDBOX_PAY_CASHIER_URL": pay.base_url + "/sandbox/cashier",
    }
    return Sandbox(mp, pay, config)


def start_embedded(config: dict) -> dict:
    """Start the sandbox for ``xintu serve``; returns the config overrides that point the app at it."""
    from .demo import add_demo

    if not config.get("PUBLIC_BASE_URL"):  # the fake WeChat must call the app back: no address, no fake
        return {}

    sandbox = start(config["PUBLIC_BASE_URL"], host="127.0.0.1")
    sandbox.mp.control_key = sandbox.pay.control_key = config.get("SANDBOX_CONTROL_KEY")
    # "both": the fake signs with its public key until `xintu sandbox signing certificate` switches it,
    # and the app follows, as in a merchant's transition. The certificates of this run only: a folder of
    # its own, removed with the process.
    cert_dir = tempfile.mkdtemp(prefix="xintu-sandbox-certs-")
    atexit.register(shutil.rmtree, cert_dir, True)
    sandbox.config.update(sandbox.verify_config("both", cert_dir))
    add_demo(sandbox.mp, config["PUBLIC_BASE_URL"])
    _running.append(sandbox)
    print(f"sandbox WeChat on {sandbox.mp.base_url}  (demo: {sandbox.mp.base_url}/demo), "
          f"WeChat Pay on {sandbox.pay.base_url}", flush=True)
    # The embedded app is reached directly by the sandbox, not through the web tier.
    return {**sandbox.config, "REQUIRE_INTERNAL_HEADER": False,
            "SANDBOX_DEMO_URL": sandbox.mp.base_url + "/demo"}
