"""`xintu sites render`: every folder of sites/ built, asset names content-hashed, no broken internal link."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from xintu.errors import ConfigError
from xintu.ops import sites
from xintu.ops.render import HASHED_ASSET_REGEX

RELEASES = [
    {"platform": "windows", "version": "1.9.0", "filename": "xintu-1.9.0.exe", "sha256": "a" * 64,
     "size": 40 << 20, "created_at": "2026-11-20T00:00:00"},
    {"platform": "windows", "version": "1.10.0", "filename": "xintu-1.10.0.exe", "sha256": "b" * 64,
     "size": 42 << 20, "created_at": "2026-11-01T00:00:00"},
    {"platform": "android", "version": "2.0.1", "filename": "xintu-2.0.1.apk", "sha256": "c" * 64,
     "size": 30 << 20, "created_at": "2026-11-02T00:00:00"},
]
CONTEXT = sites.site_context(api_base_url="https://api.xintu.test/", releases=RELEASES, year=2026,
                             hosts={"official": "www.xintu.test", "aifuture": "www.aifuture.test"})
LINK_ATTRS = {"a": ["href"], "link": ["href"], "script": ["src"], "img": ["src", "srcset"],
              "source": ["src", "srcset"], "iframe": ["src"], "form": ["action"]}


def broken_links(site_dir: Path) -> list[str]:
    """Internal references of every HTML and CSS file that do not resolve to a file of the site."""
    problems = []
    files = {p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*") if p.is_file()}
    for rel in sorted(files):
        text = (site_dir / rel).read_text(errors="replace") if rel.endswith((".html", ".css")) else ""
        refs = []
        if rel.endswith(".html"):
            soup = BeautifulSoup(text, "html.parser")
            for tag, attrs in LINK_ATTRS.items():
                for node in soup.find_all(tag):
                    for attr in attrs:
                        for value in (node.get(attr) or "").split(","):
                            refs.append(value.strip().split(" ")[0])
            for node in soup.find_all(style=True):
                refs += re.findall(r"url\(['\"]?([^'\")]+)", node["style"])
        elif rel.endswith(".css"):
            refs += re.findall(r"url\(['\"]?([^'\")]+)", text)
        for ref in refs:
            if not ref or re.match(r"^(https?:|mailto:|data:|#)", ref):
                continue
            path = ref.split("#")[0].split("?")[0]
            base = "" if path.startswith("/") else str(Path(rel).parent)
            target = Path(base, path.lstrip("/")).as_posix()
            target = str(Path(target)).replace("\\", "/")
            if path.endswith("/"):
                target = f"{target}/index.html".lstrip("./")
            if Path(target).as_posix() not in files:
                problems.append(f"{site_dir.name}/{rel} → {ref}")
    return problems


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    manifests = sites.render_sites(out, CONTEXT)
    return out, manifests


def test_every_site_folder_is_built(dist):
    out, manifests = dist
    expected = {p.name for p in sites.SITES_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert {"official", "aifuture"} <= expected
    assert set(manifests) == expected
    for site in expected:
        assert (out / site / "index.html").is_file(), site


def test_no_broken_internal_link_or_asset_in_any_site(dist):
    out, manifests = dist
    problems = [p for site in manifests for p in broken_links(out / site)]
    assert problems == []


def test_assets_carry_content_hashes_and_html_keeps_its_name(dist):
    out, manifests = dist
    for site, names in manifests.items():
        assert names, f"{site} has no assets"
        for source, hashed in names.items():
            assert re.search(HASHED_ASSET_REGEX, "/" + hashed), hashed
            assert not (out / site / source).exists(), f"{site}/{source} left unhashed"
            assert (out / site / hashed).is_file()
    assert (out / "official/robots.txt").is_file()
    assert not list(out.glob("*/_*")) and not list(out.rglob("*.j2"))


def test_official_site_links_the_highest_version_per_platform(dist):
    out, _ = dist
    html = (out / "official/index.html").read_text()
    links = [a["href"] for a in BeautifulSoup(html, "html.parser").select(".platforms a")]
    assert links == ["https://api.xintu.test/api/v1/releases/android/2.0.1/download",
                     "https://api.xintu.test/api/v1/releases/windows/1.10.0/download"]
    assert "1.9.0" not in html


def test_without_releases_the_download_section_says_coming_soon(tmp_path):
    context = sites.site_context(api_base_url="https://api.xintu.test", releases=[], year=2026)
    sites.render_sites(tmp_path, context, only=["official"])
    html = (tmp_path / "official/index.html").read_text()
    assert "即将发布" in html and "/download" not in html


def make_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "spa/js").mkdir(parents=True)
    (src / "spa/index.html").write_text(
        '<link rel="stylesheet" href="app.css"><script src="config.js"></script>'
        '<script type="module" src="./js/main.js"></script><a href="#/users">users</a>')
    (src / "spa/app.css").write_text('body { background: url("bg.svg"); }')
    (src / "spa/bg.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (src / "spa/config.js").write_text('window.API = "";')
    (src / "spa/js/main.js").write_text('import { go } from "./util.js"; go();')
    (src / "spa/js/util.js").write_text("export function go() {}")
    (src / "_deploy/spa").mkdir(parents=True)
    (src / "_deploy/spa/config.js.j2").write_text("window.API = {{ api_base_url | tojson }};")
    return src


def test_a_changed_image_renames_the_css_that_uses_it(tmp_path):
    src = make_src(tmp_path)
    first = sites.render_sites(tmp_path / "a", CONTEXT, src=src)["spa"]
    again = sites.render_sites(tmp_path / "b", CONTEXT, src=src)["spa"]
    assert first == again
    (src / "spa/bg.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg' width='1'/>")
    changed = sites.render_sites(tmp_path / "c", CONTEXT, src=src)["spa"]
    assert changed["bg.svg"] != first["bg.svg"] and changed["app.css"] != first["app.css"]
    assert changed["js/main.js"] == first["js/main.js"]
    css = (tmp_path / "c/spa" / changed["app.css"]).read_text()
    assert Path(changed["bg.svg"]).name in css


def test_module_imports_and_deploy_overlay_are_rewritten(tmp_path):
    src = make_src(tmp_path)
    names = sites.render_sites(tmp_path / "out", CONTEXT, src=src)["spa"]
    site = tmp_path / "out/spa"
    main_js = (site / names["js/main.js"]).read_text()
    assert f'"./{Path(names["js/util.js"]).name}"' in main_js
    assert (site / names["config.js"]).read_text() == 'window.API = "https://api.xintu.test";'
    assert broken_links(site) == []
    assert f'src="./{names["js/main.js"]}"' in (site / "index.html").read_text()


def test_assets_referencing_each_other_in_a_cycle_are_refused(tmp_path):
    src = make_src(tmp_path)
    (src / "spa/js/util.js").write_text('import "./main.js"; export function go() {}')
    with pytest.raises(ConfigError, match="cycle"):
        sites.render_sites(tmp_path / "out", CONTEXT, src=src)


def test_rebuild_replaces_the_folder_and_unknown_sites_are_refused(tmp_path):
    src = make_src(tmp_path)
    out = tmp_path / "out"
    sites.render_sites(out, CONTEXT, src=src)
    (out / "spa/stale.txt").write_text("old build")
    sites.render_sites(out, CONTEXT, src=src)
    assert not (out / "spa/stale.txt").exists()
    with pytest.raises(ConfigError, match="no such site"):
        sites.render_sites(out, CONTEXT, src=src, only=["nope"])
    shutil.rmtree(out)


def test_the_link_checker_reports_a_missing_page_and_asset(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site/index.html").write_text('<a href="/gone.html">x</a><img src="img/none.png">'
                                              '<a href="https://example.com/">ok</a>')
    assert broken_links(tmp_path / "site") == ["site/index.html → /gone.html",
                                               "site/index.html → img/none.png"]
