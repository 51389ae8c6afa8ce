"""A merchant's transition against `xintu serve` (gunicorn + its sandbox, the app in WECHATPAY_VERIFY_MODE
both), from a second shell: payments go through while `xintu sandbox signing` switches WeChat Pay's signer
from the public key to the platform certificate, to a rotated certificate and back."""
from __future__ import annotations

import json


def test_payments_go_through_a_signer_switch_mid_run(served):
    xintu = served

    def buy(openid):
        order = json.loads(xintu("sandbox", "buy", openid, "credits:10", "--format", "json").stdout)
        assert order["status"] == "paid", order
        return order

    buy("o_signing_1")
    switched = json.loads(xintu("sandbox", "signing", "certificate", "--format", "json").stdout)
    assert switched["signer"] == "certificate" and len(switched["certificates"]) == 1
    buy("o_signing_2")
    rotated = json.loads(xintu("sandbox", "signing", "rotate", "--format", "json").stdout)
    assert rotated["signer"] == "certificate" and len(rotated["certificates"]) == 2
    buy("o_signing_3")                       # learnt on the first message signed by the new certificate
    assert json.loads(xintu("sandbox", "signing", "public_key", "--format", "json").stdout)["signer"] == "public_key"
    buy("o_signing_4")
    bad = xintu("sandbox", "signing", "md5", check=False)
    assert bad.returncode == 2 and "md5" in bad.stderr
    audit = xintu("credits", "audit", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
