"""A small landing page for the embedded server: where to click next."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import current_app, url_for

bp = APIBlueprint("home", __name__, enable_openapi=False)

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>芯图相册 xintu</title>
<style>body{{font:16px/1.6 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.6rem}}li{{margin:.3rem 0}}code{{background:#f3f3f3;padding:0 .3rem}}</style></head>
<body><h1>芯图相册 xintu</h1><p>服务运行中 · {mode}</p><ul>{links}</ul></body></html>"""


@bp.get("/")
def index():
    links = [("/api/v1/docs", "API 文档 (OpenAPI)"), ("/healthz", "健康检查"), ("/readyz", "就绪检查")]
    for endpoint, label in (("h5.page", "微信会员页 (H5)"), ("admin_site.page", "管理后台")):
        try:
            links.append((url_for(endpoint), label))
        except Exception:  # that area is not part of this build
            pass
    mode = "沙盒模式（离线微信/支付/DashScope）" if current_app.config["SANDBOX"] else "生产模式"
    items = "".join(f'<li><a href="{href}">{label}</a> <code>{href}</code></li>' for href, label in links)
    return _PAGE.format(mode=mode, links=items), 200, {"Content-Type": "text/html; charset=utf-8"}
