"""A client generated from the served document (openapi-python-client, as the PC and mobile teams do
with their generators) walks the product end to end against the live app and the WeChat sandbox:
register → classify (multipart) → batch (multipart and JSON base64) → check-cache → QR code → the
sandbox user scans → binding poll → me → H5 login → order. Generated into tmp at test time, offline
(no post-hooks, so no ruff and no network)."""
from __future__ import annotations

import base64
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.contract_helpers import open_limits, png

pytestmark = pytest.mark.slow

GENERATOR_CONFIG = """\
post_hooks: []
project_name_override: xintu_client
package_name_override: xintu_client
content_type_overrides:   # result images: read as bytes
  image/jpeg: application/octet-stream
  image/png: application/octet-stream
  image/webp: application/octet-stream
  application/zip: application/octet-stream   # the H5 data export
"""


def _templates(folder: Path) -> Path:
    """openapi-python-client 0.29 annotates an operation with two request body types (our multipart +
    JSON uploads) ``… | Unset`` without importing ``Unset``: its own endpoint template, with the import."""
    import openapi_python_client

    source = Path(openapi_python_client.__file__).parent / "templates" / "endpoint_module.py.jinja"
    text = source.read_text(encoding="utf-8")
    old = "from ...types import Response, UNSET\n"
    assert old in text
    folder.mkdir()
    (folder / source.name).write_text(text.replace(old, "from ...types import Response, UNSET, Unset\n"),
                                      encoding="utf-8")
    return folder


@pytest.fixture
def generated(member_stack, tmp_path):
    spec = tmp_path / "openapi.json"
    served = requests.get(member_stack.url + "/api/v1/openapi.json", timeout=10)
    spec.write_text(served.text, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(GENERATOR_CONFIG, encoding="utf-8")
    out = tmp_path / "pkg" / "xintu_client"
    cli = Path(sys.executable).with_name("openapi-python-client")
    proc = subprocess.run([str(cli), "generate", "--path", str(spec), "--meta", "none", "--config",
                           str(tmp_path / "config.yaml"), "--output-path", str(out),
                           "--custom-template-path", str(_templates(tmp_path / "templates"))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr   # all of it expressible
    sys.path.insert(0, str(out.parent))
    try:
        yield importlib.import_module("xintu_client")
    finally:
        sys.path.remove(str(out.parent))
        for name in [m for m in sys.modules if m == "xintu_client" or m.startswith("xintu_client.")]:
            del sys.modules[name]


def test_a_generated_client_walks_the_main_flows(member_stack, generated):
    stack, c = member_stack, generated
    open_limits(stack.app)
    stack.app.config["CLASSIFY_CACHE_LOCAL"] = True   # so check-cache finds the local model's answer
    m = importlib.import_module("xintu_client.models")
    types = importlib.import_module("xintu_client.types")
    for area in ("clients", "classify", "member", "wechat"):
        importlib.import_module(f"xintu_client.api.{area}")
    mod = lambda area, name: importlib.import_module(f"xintu_client.api.{area}.{name}")  # noqa: E731

    anonymous = c.Client(base_url=stack.url, raise_on_unexpected_status=True)
    reg = mod("clients", "post_clients_register").sync(
        client=anonymous,
        body=m.RegisterIn(client_id="gen-client-0001", platform=m.RegisterInPlatform.WINDOWS))
    assert isinstance(reg, m.RegisterOut) and reg.token.startswith("xt_") and reg.kind == "device"
    device = c.AuthenticatedClient(base_url=stack.url, token=reg.token, raise_on_unexpected_status=True)

    photo = png("tomato")
    one = mod("classify", "post_classify_classify").sync(client=device, body=m.ImageUpload(
        image=types.File(payload=io.BytesIO(photo), file_name="tomato.png", mime_type="image/png")))
    assert isinstance(one, m.ResultOut) and len(one.sha256) == 64 and one.category

    batch = mod("classify", "post_classify_classify_batch").sync(client=device, body=m.BatchUpload(images=[
        types.File(payload=io.BytesIO(png(color)), file_name=f"{color}.png", mime_type="image/png")
        for color in ("navy", "olive")]))
    assert isinstance(batch, m.BatchOut) and batch.count == 2
    assert [r.filename for r in batch.results] == ["navy.png", "olive.png"]
    as_json = mod("classify", "post_classify_classify_batch").sync(client=device, body=m.BatchBase64(images=[
        m.BatchItem(image_base64=base64.b64encode(photo).decode(), filename="again.png"),
        m.BatchItem(image_base64="bm90IGFuIGltYWdl", filename="text.png")]))
    assert as_json.results[0].sha256 == one.sha256 and as_json.results[0].category == one.category
    assert as_json.results[1].error["code"] in ("image_unsupported", "image_corrupt")   # per item, not a 4xx

    check = mod("classify", "post_classify_check_cache")
    cached = check.sync(client=device, body=m.CheckIn(sha256=one.sha256))
    assert isinstance(cached, m.CheckOut) and cached.hit.category == one.category
    assert check.sync(client=device, body=m.CheckIn(sha256="0" * 64)).hit is None

    qr = mod("member", "post_member_create_qrcode").sync(client=device)
    assert isinstance(qr, m.QrOut) and qr.qr_image.startswith("data:image/svg+xml")
    poll = mod("member", "get_member_binding_status")
    assert poll.sync(client=device, scene=qr.scene).status == "pending"
    status, _ = stack.sandbox.mp.simulate_scan(qr.scene, "o-generated-client", first_follow=True)
    assert status == 200
    bound = poll.sync(client=device, scene=qr.scene)
    assert bound.status == "bound" and bound.token.startswith("xt_") and bound.user.credits_balance == 10
    assert isinstance(poll.sync(client=device, scene=qr.scene).token, types.Unset)   # handed out once

    user = c.AuthenticatedClient(base_url=stack.url, token=bound.token, raise_on_unexpected_status=True)
    me = mod("member", "get_member_me").sync(client=user)
    assert isinstance(me, m.ProfileOut) and me.id == bound.user.id and me.credits_balance == 10
    refused = mod("member", "get_member_me").sync_detailed(client=c.AuthenticatedClient(
        base_url=stack.url, token=reg.token))
    assert refused.status_code == 403 and refused.parsed.error.code == "forbidden"

    # The H5 page: OAuth start (302) → the sandbox's consent → landing with a ticket → session cookie.
    # One client keeps the cookies in its jar, like the page's browser: the per-browser OAuth nonce set at
    # the start, then the HttpOnly session (security: H5Cookie).
    h5 = c.Client(base_url=stack.url, raise_on_unexpected_status=True)
    start = mod("wechat", "get_wechat_oauth_start").sync_detailed(client=h5, next_=stack.url + "/h5/")
    assert start.status_code == 302
    authorize = start.headers["location"].split("#")[0]
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    consent = requests.post(authorize.split("?")[0], data={**query, "openid": "o-generated-client"},
                            allow_redirects=False, timeout=10)
    landing = h5.get_httpx_client().get(consent.headers["Location"], follow_redirects=False)
    ticket = parse_qs(urlsplit(landing.headers["Location"]).query)["ticket"][0]
    session = mod("member", "post_member_h5_session").sync_detailed(client=h5, body=m.TicketIn(ticket=ticket))
    assert session.status_code == 200 and session.parsed.ok is True
    assert "HttpOnly" in session.headers["set-cookie"] and h5.get_httpx_client().cookies.get("xintu_h5")
    order = mod("member", "post_member_create_order").sync(client=h5,
                                                           body=m.OrderIn(kind=m.OrderInKind.MEMBER))
    assert isinstance(order, m.NewOrderOut) and order.amount_fen == 2990 and order.status == "created"
    assert order.pay.mode == "sandbox" and order.pay.params["package"].startswith("prepay_id=")
    listed = mod("member", "get_member_list_orders").sync(client=h5)
    assert [o.out_trade_no for o in listed.items] == [order.out_trade_no]
    one_order = mod("member", "get_member_get_order").sync(client=h5, out_trade_no=order.out_trade_no)
    assert one_order.amount_fen == 2990 and one_order.kind == "member"
    h5_me = mod("member", "get_member_h5_me").sync(client=h5)
    assert h5_me.id == me.id and [e.reason for e in h5_me.ledger] == ["signup_bonus"]
    missing = mod("member", "get_member_get_order").sync_detailed(client=h5, out_trade_no="XT-none")
    assert missing.status_code == 404 and missing.parsed.error.code == "order_not_found"
    json.dumps(order.to_dict())   # what it parsed serialises back
