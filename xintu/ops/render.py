"""Pure render functions: validated settings (see ``settings.py``) → config file text.

The templates are package data in ``xintu/conf/``. Every function here is pure (no environment,
clock or host lookups), so the same settings always give byte-identical files: that is what the golden
tests pin and what lets a deploy show an exact diff. Host-dependent values (CPU count) are left to the
rendered file to compute on the host itself.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import jinja2

from xintu import package_data
from xintu.ops.settings import WECHAT_ROUTES

CONF_DIR = Path(os.environ.get("XINTU_CONF_DIR") or package_data.CONF_DIR)

# One TLS policy for nginx and lighttpd: Mozilla "intermediate" — TLS 1.2 with AEAD ECDHE suites only,
# plus TLS 1.3 (whose suites OpenSSL picks).
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
TLS_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
               "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")

# `xintu sites render` names assets <stem>.<10 hex>.<ext>; the web tier caches exactly those for good.
HASHED_ASSET_REGEX = r"\.[0-9a-f]{10}\.[A-Za-z0-9]+$"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(CONF_DIR)),
        undefined=jinja2.StrictUndefined,   # a missing setting is an error, never an empty directive
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _render(template: str, settings: dict, **extra) -> str:
    context = dict(settings)
    context["env_file"] = f"{settings['paths']['root']}/shared/xintu.env"
    context.update(tls_protocols=TLS_PROTOCOLS, tls_ciphers=TLS_CIPHERS, wechat_urls=wechat_urls(settings))
    context.update(extra)
    return _env().get_template(template).render(**context)


def render_nginx_main(settings: dict) -> str:
    return _render("nginx/nginx.conf.j2", settings,
                   mime_types=settings["paths"]["nginx_mime_types"],
                   nginx_tmp=f"{settings['paths']['root']}/shared/nginx-tmp",
                   site_file="xintu-api.conf")


def render_nginx(settings: dict) -> str:
    """The app tier site (server blocks), included by the main config."""
    return _render("nginx/xintu-api.conf.j2", settings, wechat_routes=list(WECHAT_ROUTES.values()))


def render_gunicorn(settings: dict) -> str:
    return _render("gunicorn/gunicorn.conf.py.j2", settings)


def _lighttpd_quote(value: str) -> str:
    if any(ch in value for ch in '"\\\n\r'):
        raise ValueError("the shared secret must not contain quotes, backslashes or newlines")
    return value


def wechat_urls(settings: dict) -> dict[str, str]:
    """The public URLs of the WeChat endpoints (web tier vhost + kept paths), as WeChat must call them."""
    web = settings["web"]
    host = web["vhosts"][web["wechat_vhost"]]["host"]
    scheme, port = ("https", web["https_port"]) if web["tls"] else ("http", web["port"])
    authority = host if port == (443 if web["tls"] else 80) else f"{host}:{port}"
    return {name: f"{scheme}://{authority}{path}" for name, path in web["wechat_paths"].items()}


def render_lighttpd(settings: dict, secret: str) -> str:
    web = settings["web"]
    public = web["wechat_paths"]
    proxy_regex = "|".join(re.escape(path) for path in list(public.values()) + web["extra_proxy_paths"])
    # public path → app route, for the ones that differ (longest first: mod_proxy maps by prefix)
    path_map = sorted(((public[name], route) for name, route in WECHAT_ROUTES.items()
                       if public[name] != route), key=lambda pair: -len(pair[0]))
    return _render("lighttpd/lighttpd.conf.j2", settings, secret=_lighttpd_quote(secret),
                   proxy_regex=proxy_regex, path_map=path_map, hashed_asset_regex=HASHED_ASSET_REGEX,
                   redirect_port="" if web["https_port"] == 443 else f":{web['https_port']}")


def render_mariadb(settings: dict, role: str) -> str:
    if role not in ("primary", "replica"):
        raise ValueError(f"unknown MariaDB role {role!r}")
    return render_mariadb_node(settings["db"], role, settings["db"][role])


def render_mariadb_node(db: dict, role: str, node: dict) -> str:
    """One server's my.cnf from the ``db`` table and a node table (also used for local test servers)."""
    return _env().get_template("mariadb/mariadb.cnf.j2").render(db=db, role=role, node=node)


def render_systemd(settings: dict) -> dict[str, str]:
    units = {
        "xintu-gunicorn.service": _render("systemd/xintu-gunicorn.service.j2", settings),
        "xintu-worker@.service": _render("systemd/xintu-worker@.service.j2", settings),
        "xintu-workers.target": _render("systemd/xintu-workers.target.j2", settings),
    }
    for name, job in settings["jobs"].items():
        units[f"xintu-{name}.service"] = _render("systemd/job.service.j2", settings, job_name=name, job=job)
        units[f"xintu-{name}.timer"] = _render("systemd/job.timer.j2", settings, job_name=name, job=job)
    return units


def render_cron(settings: dict) -> str:
    return _render("cron/xintu.cron.j2", settings)


def render_all(settings: dict, secret: str) -> dict[str, str]:
    """Every config file of a deployment, keyed by its path relative to the output folder."""
    files = {
        "nginx/nginx.conf": render_nginx_main(settings),
        "nginx/xintu-api.conf": render_nginx(settings),
        "gunicorn/gunicorn.conf.py": render_gunicorn(settings),
        "lighttpd/lighttpd.conf": render_lighttpd(settings, secret),
        "mariadb/primary.cnf": render_mariadb(settings, "primary"),
        "mariadb/replica.cnf": render_mariadb(settings, "replica"),
        "cron/xintu": render_cron(settings),
    }
    files.update({f"systemd/{name}": text for name, text in render_systemd(settings).items()})
    return files


# Files readable by their server only: the web tier config carries the shared secret.
PRIVATE_FILES = {"lighttpd/lighttpd.conf"}


def write_tree(files: dict[str, str], out: str | os.PathLike) -> list[Path]:
    """Write rendered files under ``out`` (atomically per file) and return their paths."""
    out = Path(out)
    written = []
    for rel, text in sorted(files.items()):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o640 if rel in PRIVATE_FILES else 0o644)
        tmp.replace(target)
        written.append(target)
    return written
