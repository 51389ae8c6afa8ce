"""ReleaseService: installers stored under RELEASES_DIR, described by a ``releases`` row (one per app).

The file is written to a temporary name while its SHA-256 is computed, then renamed, so a
half-uploaded installer is never served and the recorded digest is of the bytes on disk.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from flask import current_app
from peewee import IntegrityError

from xintu.db import atomic, stale_call
from xintu.errors import BadRequest, Conflict, NotFound, UnsupportedMediaType
from xintu.models import Release
from xintu.stats.rollup import count_download
from xintu.timeutil import iso

PLATFORMS = ("windows", "mac", "android")
EXTENSIONS = {"windows": (".exe", ".msi", ".zip"), "mac": (".dmg", ".pkg", ".zip"), "android": (".apk",)}
VERSION = re.compile(r"^\d{1,4}(\.\d{1,4}){1,3}(-[0-9A-Za-z.]{1,16})?$")
CHUNK = 1 << 20


def version_key(version: str) -> tuple:
    """1.10.0 > 1.9.2, and a pre-release (1.2.0-beta) sorts before its release."""
    core, _, pre = version.partition("-")
    nums = tuple(int(p) for p in core.split("."))
    return nums + (0,) * (4 - len(nums)) + (pre == "", pre)


def check_platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise BadRequest(f"平台只能是 {' / '.join(PLATFORMS)}", code="invalid_platform")
    return platform


class ReleaseService:
    """Releases of one app: files under its ``RELEASES_DIR`` (default ``<instance>/releases``)."""

    def __init__(self, app):
        self.config, self.instance_path = app.config, app.instance_path

    @property
    def folder(self) -> Path:
        path = Path(self.config.get("RELEASES_DIR") or Path(self.instance_path) / "releases")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def describe(self, r: Release) -> dict:
        base = self.config.get("PUBLIC_BASE_URL", "").rstrip("/")
        return {"id": r.id, "platform": r.platform, "version": r.version, "filename": r.filename,
                "size": r.size, "sha256": r.sha256, "notes": r.notes, "downloads": r.downloads,
                "created_at": iso(r.created_at),
                "download_url": f"{base}/api/v1/releases/{r.platform}/{r.version}/download"}

    def upload(self, stream: BinaryIO, filename: str, *, platform: str, version: str,
               notes: str | None = None) -> Release:
        check_platform(platform)
        if not VERSION.match(version or ""):
            raise BadRequest("版本号格式应为 1.2.3 或 1.2.3-beta", code="invalid_version")
        ext = os.path.splitext(filename or "")[1].lower()
        if ext not in EXTENSIONS[platform]:
            raise UnsupportedMediaType(f"{platform} 安装包须为 {' / '.join(EXTENSIONS[platform])}",
                                       code="invalid_installer_type")
        if Release.get_or_none(Release.platform == platform, Release.version == version):
            raise Conflict(f"{platform} {version} 已发布过", code="release_exists")
        folder = self.folder
        final = folder / f"xintu-{version}-{platform}{ext}"
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if size == 0:
                raise BadRequest("安装包是空文件", code="empty_file")
            with atomic():
                release = Release.create(platform=platform, version=version, filename=final.name,
                                         sha256=digest.hexdigest(), size=size, notes=(notes or None))
                os.replace(tmp, final)
        except IntegrityError:
            raise Conflict(f"{platform} {version} 已发布过", code="release_exists") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return release

    def upload_file(self, path: str | Path, **kwargs) -> Release:
        with open(path, "rb") as fh:
            return self.upload(fh, Path(path).name, **kwargs)

    def list(self, platform: str | None = None) -> list[Release]:
        def read():
            query = Release.select()
            if platform:
                query = query.where(Release.platform == check_platform(platform))
            return sorted(query, key=lambda r: (r.platform, version_key(r.version)), reverse=True)
        return stale_call(read)

    def latest(self, platform: str) -> Release:
        found = self.list(platform)
        if not found:
            raise NotFound(f"{platform} 暂无可下载版本", code="no_release")
        return found[0]

    def resolve(self, platform: str, version: str) -> Release:
        if version == "latest":
            return self.latest(platform)
        check_platform(platform)
        release = Release.get_or_none(Release.platform == platform, Release.version == version)
        if release is None:
            raise NotFound(f"{platform} {version} 不存在", code="no_release")
        return release

    def download(self, platform: str, version: str) -> tuple[Release, Path]:
        """The release and its file; counts the download (primary write)."""
        release = self.resolve(platform, version)
        path = self.folder / release.filename
        if not path.is_file():
            raise NotFound("安装包文件缺失", code="release_file_missing")
        count_download(release)
        return release, path


def get_service(app=None) -> ReleaseService:
    """The app's ReleaseService, built once per app (``app.extensions["xintu.releases"]``)."""
    app = app or current_app
    svc = app.extensions.get("xintu.releases")
    if svc is None:
        svc = app.extensions.setdefault("xintu.releases", ReleaseService(app))
    return svc


# The 管理后台 (xintu/admin/api.py) still calls these module-level names; they are the app's service.
def release_dict(r: Release) -> dict:
    return get_service().describe(r)


def upload(stream: BinaryIO, filename: str, **kwargs) -> Release:
    return get_service().upload(stream, filename, **kwargs)


def list_releases(platform: str | None = None) -> list[Release]:
    return get_service().list(platform)
