"""Interactive API docs that work offline: Swagger UI 5 files shipped by flask-swagger-ui."""

from __future__ import annotations

import os

import flask_swagger_ui
from apiflask import APIBlueprint

_DIST = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")

bp = APIBlueprint("swagger_assets", __name__, static_folder=_DIST,
                  static_url_path="/api/v1/docs/assets", enable_openapi=False)


@bp.record_once
def _point_docs_at_local_assets(state):
    base = "/api/v1/docs/assets"
    state.app.config.update(
        SWAGGER_UI_CSS=f"{base}/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS=f"{base}/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS=f"{base}/swagger-ui-standalone-preset.js",
        DOCS_FAVICON=f"{base}/favicon-32x32.png",
    )
