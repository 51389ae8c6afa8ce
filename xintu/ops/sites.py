"""Build ``sites/`` into per-vhost dist folders with content-hashed asset names (`xintu sites render`).

Every folder of ``sites/`` not starting with ``_`` is a site (official, aifuture, admin, h5, …) and
becomes ``OUT/<site>/``. ``*.j2`` files are Jinja2 templates rendered with the deployment context
(latest releases, API base URL); files whose name starts with ``_`` are layouts, not output. Files of
``sites/_deploy/<site>/`` are laid over the site's own: that is how a page written for same-origin use
(``config.js``) gets the deployment's API address without its authors keeping a deploy copy.

Assets (everything but HTML and a few fixed names) are renamed ``<stem>.<hash10>.<ext>`` after the
references inside them were rewritten, so a changed image changes the name of the CSS that uses it,
and the CDN can cache every asset for a year while HTML stays short-cached. Pure apart from reading
the source folder and writing the output: no clock, no network.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
from pathlib import Path

import jinja2

from xintu import package_data
from xintu.errors import ConfigError

SITES_DIR = package_data.SITES_DIR
OVERLAY = "_deploy"
FIXED_NAMES = {"robots.txt", "favicon.ico", "manifest.webmanifest", "sitemap.xml"}
TEXT_SUFFIXES = {".html", ".css", ".js", ".mjs", ".json", ".svg", ".webmanifest", ".txt", ".xml"}
# A quoted string or a CSS url(): candidates for a reference to another file of the site.
REFERENCE = re.compile(r"""(?P<q>["'])(?P<ref>[^"'\s<>(){}]+)(?P=q)|url\(\s*(?P<url>[^)"'\s]+)\s*\)""")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)


def discover(src: Path = SITES_DIR) -> list[str]:
    return sorted(p.name for p in Path(src).iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _sources(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)}


def _load(site_dir: Path, overlay_dir: Path, context: dict) -> dict[str, bytes]:
    """Source files of one site → {output path: bytes}, templates rendered, overlay applied."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(overlay_dir), str(site_dir)]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(["html.j2", "htm.j2"]))
    files: dict[str, bytes] = {}
    for layer in (site_dir, overlay_dir):
        for rel, path in _sources(layer).items():
            if rel.endswith(".j2"):
                text = env.get_template(rel).render(**context)
                files[rel[:-3]] = text.encode("utf-8")
            else:
                files[rel] = path.read_bytes()
    return files


def _is_asset(rel: str) -> bool:
    return not rel.endswith((".html", ".htm")) and posixpath.basename(rel) not in FIXED_NAMES


def _resolve(ref: str, from_rel: str) -> tuple[str, str] | None:
    """(target path in the site, the query/fragment suffix), or None for external references."""
    if EXTERNAL.match(ref):
        return None
    path, suffix = re.match(r"([^?#]*)(.*)", ref, re.DOTALL).groups()
    if not path:
        return None
    base = "" if path.startswith("/") else posixpath.dirname(from_rel)
    target = posixpath.normpath(posixpath.join(base, path.lstrip("/")))
    return (None if target.startswith("..") else target), suffix


def references(text: str, from_rel: str) -> list[str]:
    """Site-relative paths a text file points at (existing or not): used by the build and the tests."""
    found = []
    for match in REFERENCE.finditer(text):
        resolved = _resolve(match.group("ref") or match.group("url"), from_rel)
        if resolved and resolved[0]:
            found.append(resolved[0])
    return found


def _rewrite(text: str, from_rel: str, names: dict[str, str]) -> str:
    def swap(match: re.Match) -> str:
        ref = match.group("ref") or match.group("url")
        resolved = _resolve(ref, from_rel)
        if not resolved or resolved[0] not in names:
            return match.group(0)
        target, suffix = resolved
        if ref.startswith("/"):
            new = "/" + names[target]
        else:
            new = posixpath.relpath(names[target], posixpath.dirname(from_rel) or ".")
            # "./x.js" must stay explicit: in an ES module import a bare "x.js" is a package name.
            if ref.startswith("./") and not new.startswith("."):
                new = "./" + new
        return match.group(0).replace(ref, new + suffix)

    return REFERENCE.sub(swap, text)


def _hashed(rel: str, content: bytes) -> str:
    stem, dot, ext = posixpath.basename(rel).rpartition(".")
    digest = hashlib.sha256(content).hexdigest()[:10]
    name = f"{stem}.{digest}.{ext}" if dot else f"{ext}.{digest}"
    return posixpath.join(posixpath.dirname(rel), name)


def build_site(files: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Hash asset names (dependencies first) and rewrite references; returns (dist files, manifest)."""
    is_text = {rel: posixpath.splitext(rel)[1] in TEXT_SUFFIXES for rel in files}
    deps = {rel: ({t for t in references(files[rel].decode("utf-8"), rel) if t in files and _is_asset(t)}
                  - {rel}) if is_text[rel] else set() for rel in files}
    names: dict[str, str] = {}
    out: dict[str, bytes] = {}
    pending = [rel for rel in sorted(files) if _is_asset(rel)]
    while pending:
        ready = [rel for rel in pending if deps[rel] <= names.keys()]
        if not ready:
            raise ConfigError("assets reference each other in a cycle: " + ", ".join(pending),
                              code="asset_cycle")
        for rel in ready:
            content = files[rel]
            if is_text[rel]:
                content = _rewrite(content.decode("utf-8"), rel, names).encode("utf-8")
            names[rel] = _hashed(rel, content)
            out[names[rel]] = content
        pending = [rel for rel in pending if rel not in names]
    for rel in files:
        if not _is_asset(rel):
            content = files[rel]
            if is_text[rel]:
                content = _rewrite(content.decode("utf-8"), rel, names).encode("utf-8")
            out[rel] = content
    return out, names


def render_sites(out: str | Path, context: dict, src: str | Path = SITES_DIR,
                 only: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Build every site (or ``only`` those) into ``out/<site>``; returns {site: {source: dist name}}."""
    src, out = Path(src), Path(out)
    sites = discover(src)
    unknown = sorted(set(only or []) - set(sites))
    if unknown:
        raise ConfigError(f"no such site under {src}: {', '.join(unknown)}", code="unknown_site")
    manifests = {}
    for site in only or sites:
        files = _load(src / site, src / OVERLAY / site, {**context, "site": site})
        dist, names = build_site(files)
        target = out / site
        staging = out / f".{site}.new"
        shutil.rmtree(staging, ignore_errors=True)
        for rel, content in dist.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(content)
        # Swap the whole folder: a vhost never serves half of an old and half of a new build.
        if target.exists():
            old = out / f".{site}.old"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
        manifests[site] = names
    manifest_file = out / "manifest.json"
    merged = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    merged.update(manifests)
    manifest_file.write_text(json.dumps(merged, ensure_ascii=False, indent=1, sort_keys=True))
    return manifests


def latest_releases(releases: list[dict]) -> dict[str, dict]:
    """The newest release per platform, by version number (not upload time: a hotfix of an old line
    uploaded later must not replace the current version on the download page)."""
    from packaging.version import InvalidVersion, Version

    def key(release):
        try:
            return (1, Version(release["version"]), str(release.get("created_at") or ""))
        except InvalidVersion:
            return (0, Version("0"), str(release.get("created_at") or ""))

    latest: dict[str, dict] = {}
    for release in sorted(releases, key=key):
        latest[release["platform"]] = release
    return latest


def site_context(*, api_base_url: str, releases: list[dict], year: int,
                 hosts: dict[str, str] | None = None) -> dict:
    """Template variables of every site. Download links go through the app's counted download
    endpoint (which redirects to the CDN when one is configured), so the static page never goes stale
    on where installers are stored."""
    api = api_base_url.rstrip("/")
    downloads = {}
    for platform, release in latest_releases(releases).items():
        downloads[platform] = {**release, "size_mb": round(release["size"] / 1048576, 1),
                               "url": f"{api}/api/v1/releases/{platform}/{release['version']}/download"}
    return {"api_base_url": api, "downloads": downloads, "year": year,
            "hosts": hosts or {}}
