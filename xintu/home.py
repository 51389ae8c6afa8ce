"""The embedded server's front door: a landing page, and the admin SPA served from the checkout.

In production the admin SPA and the H5 page are static sites on the web tier / CDN (`xintu sites
render`); here they are served by the app itself so `xintu serve` is usable in a browser on its own.
"""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import current_app, send_from_directory

from xintu import package_data
from xintu.errors import NotFound

ADMIN_DIR = package_data.SITES_DIR / "admin"

bp = APIBlueprint("home", __name__, enable_openapi=False)

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>芯图相册 xintu</title>
<style>body{{font:16px/1.6 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.6rem}}li{{margin:.3rem 0}}code{{background:#f3f3f3;padding:0 .3rem}}</style></head>
<body><h1>芯图相册 xintu</h1><p>服务运行中 · {mode}</p><ul>{links}</ul>{hint}</body></html>"""


def _embedded() -> bool:
    return current_app.config["ENV"] != "production"


@bp.get("/")
def index():
    config = current_app.config
    links = [("/api/v1/docs", "API 文档 (OpenAPI)"), ("/healthz", "健康检查"), ("/readyz", "就绪检查")]
    if _embedded():
        links += [("/h5/", "微信会员页 (H5)"), ("/admin/", "管理后台")]
    if config.get("SANDBOX_DEMO_URL"):
        links.append((config["SANDBOX_DEMO_URL"], "沙盒：模拟 PC 客户端扫码关注"))
    mode = "沙盒模式（离线微信 / 微信支付 / DashScope）" if config["SANDBOX"] else "生产模式"
    items = "".join(f'<li><a href="{href}">{label}</a> <code>{href}</code></li>' for href, label in links)
    hint = ("<p>管理后台账号：<code>xintu admin create-user NAME --role operator</code></p>"
            if _embedded() else "")
    return _PAGE.format(mode=mode, links=items, hint=hint), 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.get("/admin/")
@bp.get("/admin/<path:name>")
def admin_page(name="index.html"):
    if not _embedded() or not ADMIN_DIR.is_dir():
        raise NotFound("页面不存在", code="not_found")
    return send_from_directory(ADMIN_DIR, name, max_age=0)
