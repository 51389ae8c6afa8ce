"""The sandbox's demo page plays the PC client, so the whole flow can be clicked through in a browser:
it registers a device, asks the app for a follow QR code, shows it with a link to the simulated phone,
and polls the binding like the client would."""
from __future__ import annotations

import html

import requests

from .base import Response


def add_demo(mp, app_base_url: str):
    app = app_base_url.rstrip("/")

    def page(req):
        reg = requests.post(app + "/api/v1/clients", json={"client_id": "sandbox-demo-pc", "platform": "web"},
                            timeout=10)
        if reg.status_code != 201:
            return Response.html(f"<p>注册设备失败：HTTP {reg.status_code}</p>", status=502)
        token = reg.json()["token"]
        qr = requests.post(app + "/api/v1/auth/wechat/qrcode", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
        if qr.status_code != 201:
            return Response.html(f"<p>生成二维码失败：{html.escape(qr.text)}</p>", status=502)
        info = qr.json()
        status_url = f"/demo/status?scene={info['scene']}&token={token}"
        return Response.html(
            "<!doctype html><meta charset=utf-8><title>芯图相册 · 沙箱演示</title>"
            "<h1>模拟电脑客户端：微信扫码登录</h1>"
            f"<img id=qr alt=二维码 src='{info['qr_image']}'>"
            f"<p><a id=scan href='{html.escape(info['url'])}'>① 用“手机”扫这个二维码（模拟）</a></p>"
            f"<p><a id=status href='{html.escape(status_url)}'>② 查看客户端绑定状态</a></p>"
            f"<p><a id=h5 href='{app}/h5/'>③ 在“微信”里打开会员中心</a></p>")

    def status(req):
        resp = requests.get(app + "/api/v1/auth/wechat/binding", params={"scene": req.arg("scene")},
                            headers={"Authorization": f"Bearer {req.arg('token')}"}, timeout=10)
        return Response.html(f"<!doctype html><meta charset=utf-8><pre id=binding>"
                             f"{html.escape(resp.text)}</pre><p><a href='{app}/h5/'>打开会员中心</a></p>")

    mp.route("GET", "/demo", page)
    mp.route("GET", "/demo/status", status)
