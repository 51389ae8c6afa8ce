"""Public release endpoints: the latest installer per platform and counted downloads."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Integer, String
from apiflask.validators import OneOf, Regexp
from flask import current_app, redirect, send_file

from xintu.apidoc import errors
from xintu.releases.service import PLATFORMS, VERSION, get_service

bp = APIBlueprint("releases", __name__, url_prefix="/api/v1/releases", tag="releases")


class LatestQuery(Schema):
    platform = String(required=True, validate=OneOf(PLATFORMS))


class DownloadPath(Schema):
    platform = String(required=True, validate=OneOf(PLATFORMS))
    version = String(required=True, validate=Regexp(f"^latest$|{VERSION.pattern}"),
                     metadata={"description": "1.2.3, 1.2.3-beta or latest", "example": "latest"})


class ReleaseOut(Schema):
    id = Integer()
    platform = String()
    version = String()
    filename = String()
    size = Integer()
    sha256 = String()
    notes = String(allow_none=True)
    download_url = String()
    downloads = Integer()
    created_at = String()


@bp.get("/latest")
@bp.input(LatestQuery, location="query", arg_name="query")
@bp.output(ReleaseOut)
@bp.doc(summary="最新安装包", description="该平台版本号最高的安装包（含下载地址、大小、SHA-256）",
        responses=errors({404: ["no_release"]}))
def latest(query):
    releases = get_service()
    return releases.describe(releases.latest(query["platform"]))


@bp.get("/<platform>/<version>/download")
@bp.input(DownloadPath, location="path", arg_name="path", validation=False)   # the service keeps its codes
@bp.doc(summary="下载安装包（计数）", description="version 可为 latest；配置了 RELEASES_PUBLIC_URL 时跳转到 CDN",
        responses={200: {"description": "the installer", "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            302: {"description": "to the CDN copy (RELEASES_PUBLIC_URL)",
                  "headers": {"Location": {"schema": {"type": "string"}}}},
            **errors({400: ["invalid_platform", "invalid_version"],
                      404: ["no_release", "release_file_missing"]})})
def download(platform: str, version: str, path):
    release, path = get_service().download(platform, version)
    cdn = current_app.config.get("RELEASES_PUBLIC_URL")
    if cdn:
        return redirect(f"{cdn.rstrip('/')}/{release.filename}", code=302)
    return send_file(path, mimetype="application/octet-stream", as_attachment=True,
                     download_name=release.filename, max_age=0)
