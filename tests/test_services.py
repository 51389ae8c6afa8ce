"""One service shape per area: an object built once per app, kept in app.extensions["xintu.<area>"] and
returned by xintu/<area>/service.py's get_service(app=None) — to the blueprint, the CLI and the admin alike."""
import importlib

import pytest

from xintu.app import create_app

AREAS = ["classify", "stats", "edit", "location", "releases"]


@pytest.mark.parametrize("area", AREAS)
def test_each_area_has_one_service_per_app(app, tmp_path, area):
    get_service = importlib.import_module(f"xintu.{area}.service").get_service
    with app.app_context():
        service = get_service()
        assert get_service() is service and app.extensions[f"xintu.{area}"] is service
    assert get_service(app) is service
    other = create_app({"INSTANCE_PATH": str(tmp_path / "other"), "SECRET_KEY": "o" * 40})
    assert get_service(other) is not service


def test_a_kept_service_reads_the_configuration_of_the_moment(app, tmp_path):
    from xintu.edit.service import get_service as edit_service
    from xintu.releases.service import get_service as release_service

    edit, releases = edit_service(app), release_service(app)
    app.config.update(EDIT_MODEL="wanx2.1-imageedit", RELEASES_DIR=str(tmp_path / "store"))
    assert edit.model == "wanx2.1-imageedit"
    assert releases.folder == tmp_path / "store" and (tmp_path / "store").is_dir()
