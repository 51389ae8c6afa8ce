"""The committed OpenAPI document (docs/openapi.json) is the contract: the served one must equal it, and
it must say what every operation accepts and answers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from xintu import apidoc

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / apidoc.SPEC_FILE
ERROR_REFS = {"#/components/schemas/HTTPError", "#/components/schemas/ValidationError"}   # one schema
UPLOADS = {"/api/v1/classify": "image", "/api/v1/classify/local": "image",
           "/api/v1/classify/batch": "images"}


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _diff(served: dict, committed: dict) -> list[str]:
    changed = []
    for name, operation in _operations(served):
        method, path = name.split(" ", 1)
        if committed["paths"].get(path, {}).get(method.lower()) != operation:
            changed.append(name)
    changed += [name for name, _ in _operations(committed)
                if name.split(" ", 1)[1] not in served["paths"]
                or name.split(" ", 1)[0].lower() not in served["paths"][name.split(" ", 1)[1]]]
    if served.get("components") != committed.get("components"):
        changed.append("components")
    return changed


def test_served_document_is_the_committed_one(client):
    served = client.get("/api/v1/openapi.json").get_json()
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert served == committed, (
        f"the served OpenAPI document differs from {apidoc.SPEC_FILE} in {_diff(served, committed)}: "
        f"run `{apidoc.REGENERATE}`, review the diff, and record the change in docs/API-CHANGES.md "
        "(mark breaking ones; /api/v1 must stay compatible)")


def test_the_regenerate_command_checks_the_committed_file(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "xintu_cli.main", "api", "spec", "--check", str(COMMITTED)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "openapi.json"
    doc = json.loads(COMMITTED.read_text(encoding="utf-8"))
    doc["paths"].pop("/api/v1/me")
    stale.write_text(json.dumps(doc), encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "xintu_cli.main", "api", "spec", "--check", str(stale)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and apidoc.REGENERATE in bad.stderr


def test_every_error_response_has_the_error_schema_and_its_codes(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for name, operation in _operations(doc):
        assert "503" in operation["responses"], name
        assert any(s < "400" for s in operation["responses"]), name
        for status, response in operation["responses"].items():
            if status >= "400":
                media = response["content"]["application/json"]
                assert media["schema"]["$ref"] in ERROR_REFS, (name, status)
                codes = list(media["examples"])
                assert codes and all(media["examples"][c]["value"]["error"]["code"] == c for c in codes)
                assert all(f"`{c}`" in response["description"] for c in codes), (name, status)
        if operation.get("security"):
            assert "401" in operation["responses"], name
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True, name


def test_uploads_document_multipart_binary_and_the_json_base64_variant(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]

    def resolve(schema):
        return schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema

    for path, field in UPLOADS.items():
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        form = resolve(content["multipart/form-data"]["schema"])
        prop = form["properties"][field]
        assert field in form["required"]
        assert (prop.get("items", prop))["format"] == "binary", path
        alt = resolve(content["application/json"]["schema"])
        assert alt["required"] == (["image_base64"] if field == "image" else ["images"]), path
    edit = doc["paths"]["/api/v1/image-edit"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(resolve(edit["schema"])["required"]) == {"images", "prompt"}


def test_security_is_declared_per_operation(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    security = {name: op.get("security") for name, op in _operations(doc)}
    assert security["GET /api/v1/me"] == [{"BearerAuth": ["user"]}]
    assert security["POST /api/v1/classify"] == [{"BearerAuth": []}]
    assert security["POST /api/v1/orders"] == [{"H5Cookie": []}]
    assert security["GET /api/v1/admin/users"] == [{"AdminBearerAuth": []}]
    assert security["GET /api/v1/prices"] is None and security["POST /api/v1/clients"] is None
    assert doc["components"]["securitySchemes"]["H5Cookie"] == apidoc.SECURITY_SCHEMES["H5Cookie"]
