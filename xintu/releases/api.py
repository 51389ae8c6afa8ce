"""Public release endpoints: the latest installer per platform and counted downloads."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import String
from apiflask.validators import OneOf
from flask import current_app, redirect, send_file

from xintu.releases import service
from xintu.releases.service import PLATFORMS

bp = APIBlueprint("releases", __name__, url_prefix="/api/v1/releases", tag="releases")


class LatestQuery(Schema):
    platform = String(required=True, validate=OneOf(PLATFORMS))


@bp.get("/latest")
@bp.input(LatestQuery, location="query", arg_name="query")
@bp.doc(summary="最新安装包", description="该平台版本号最高的安装包（含下载地址、大小、SHA-256）")
def latest(query):
    return service.release_dict(service.latest(query["platform"]))


@bp.get("/<platform>/<version>/download")
@bp.doc(summary="下载安装包（计数）", description="version 可为 latest；配置了 RELEASES_PUBLIC_URL 时跳转到 CDN")
def download(platform: str, version: str):
    release, path = service.download(platform, version)
    cdn = current_app.config.get("RELEASES_PUBLIC_URL")
    if cdn:
        return redirect(f"{cdn.rstrip('/')}/{release.filename}", code=302)
    return send_file(path, as_attachment=True, download_name=release.filename, max_age=0)
