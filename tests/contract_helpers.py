"""Real credentials of every role on a live MemberStack (tests/member_fixtures.py), for the contract
tests: a device token, a bound-user token (QR code → sandbox scan → poll), the H5 session cookie
(sandbox OAuth → hand-off ticket), operator and viewer admin sessions, plus one order, one image-edit
task and one release so that operations taking their ids have something to find."""
from __future__ import annotations

import io
import secrets
import time
from dataclasses import dataclass, field

import requests
from PIL import Image

ADMIN_PASSWORD = "contract password!"


@dataclass
class Roles:
    device: str
    bound: str
    h5_cookie: str
    operator: str
    viewer: str
    logout: str                # a session of its own, for POST /api/v1/admin/logout
    user_id: int
    out_trade_no: str
    task_id: str
    throwaway: dict = field(default_factory=dict)   # identities the destructive operations may end
    extra: dict = field(default_factory=dict)

    def headers(self, security: list, admin: str = "operator") -> dict:
        """The headers an operation with this OpenAPI ``security`` requirement needs."""
        for requirement in security or []:
            for scheme, roles in requirement.items():
                if scheme == "BearerAuth":
                    return {"Authorization": f"Bearer {self.bound if roles else self.device}"}
                if scheme == "AdminBearerAuth":
                    return {"Authorization": f"Bearer {getattr(self, admin)}"}
                if scheme == "H5Cookie":
                    return {"Cookie": f"xintu_h5={self.h5_cookie}"}
        return {}


def png(color="orange", size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def open_limits(app) -> None:
    """The fuzzer is one very busy client and tries many wrong logins: lift the throttles."""
    app.config.update(CLIENT_REQUESTS_PER_MINUTE=0, CLIENT_REGISTRATIONS_PER_HOUR=10 ** 6,
                      ADMIN_LOGIN_ATTEMPTS_PER_10MIN=10 ** 6, ADMIN_MAX_FAILURES=10 ** 6)


def bind_by_qr(stack, device: str, openid: str) -> dict:
    """QR code → the sandbox WeChat user scans and follows → the poll hands out the bound token."""
    auth = {"Authorization": f"Bearer {device}"}
    qr = requests.post(stack.url + "/api/v1/auth/wechat/qrcode", headers=auth, timeout=10).json()
    status, _ = stack.sandbox.mp.simulate_scan(qr["scene"], openid, first_follow=True)
    assert status == 200
    bound = requests.get(stack.url + "/api/v1/auth/wechat/binding", params={"scene": qr["scene"]},
                         headers=auth, timeout=10).json()
    assert bound["status"] == "bound", bound
    return bound


def roles(stack, releases_dir) -> Roles:
    from xintu.admin.auth import create_admin

    app = stack.app
    open_limits(app)
    app.config["RELEASES_DIR"] = str(releases_dir)
    openid = "o-contract-" + secrets.token_hex(4)
    device = stack.register_device()
    bound = bind_by_qr(stack, stack.register_device(), openid)
    http = stack.h5_login(openid)
    order = stack.buy(http, "member")
    with stack.in_app():
        create_admin("contract-op", ADMIN_PASSWORD, "operator")
        create_admin("contract-viewer", ADMIN_PASSWORD, "viewer")

    def admin(name):
        resp = requests.post(stack.url + "/api/v1/admin/login",
                             json={"username": name, "password": ADMIN_PASSWORD}, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()["token"]

    operator = admin("contract-op")
    upload = requests.post(stack.url + "/api/v1/admin/releases",
                           headers={"Authorization": f"Bearer {operator}"},
                           data={"platform": "windows", "version": "1.0.0"},
                           files={"file": ("xintu-setup.exe", b"MZ installer bytes")}, timeout=10)
    assert upload.status_code == 201, upload.text
    task = requests.post(stack.url + "/api/v1/image-edit",
                         headers={"Authorization": f"Bearer {bound['token']}"},
                         data={"prompt": "把背景换成海边"}, files={"images": ("a.png", png())}, timeout=10)
    assert task.status_code == 202, task.text
    warm = requests.get(stack.url + "/api/v1/location", params={"lat": 39.9, "lon": 116.4},  # loads geodata
                        headers={"Authorization": f"Bearer {device}"}, timeout=120)
    assert warm.status_code == 200, warm.text
    # Logging out, erasing and revoking end the credentials they are called with: those operations get a
    # user and a device of their own, so the rest of the run keeps its identities.
    spare_openid = "o-contract-spare-" + secrets.token_hex(4)
    spare = bind_by_qr(stack, stack.register_device(), spare_openid)
    spare_h5 = stack.h5_login(spare_openid)
    throwaway = {"device": stack.register_device(), "h5_cookie": spare_h5.cookies["xintu_h5"],
                 "user_id": spare["user"]["id"]}
    return Roles(device=device, bound=bound["token"], h5_cookie=http.cookies["xintu_h5"], operator=operator,
                 viewer=admin("contract-viewer"), logout=admin("contract-op"), user_id=bound["user"]["id"],
                 out_trade_no=order["out_trade_no"], task_id=task.json()["task_id"], throwaway=throwaway)


def warm(base: str, token: str) -> None:
    """The first classification in a worker builds the local model and the first lookup loads the polygons
    (16–36 s measured on a busy 2-core machine, over schemathesis' 10 s response-time check): done first,
    concurrently, so that each gunicorn worker of `xintu serve` gets some."""
    from concurrent.futures import ThreadPoolExecutor

    from xintu.apidoc import EXAMPLE_PNG_BASE64

    headers = {"Authorization": f"Bearer {token}"}

    def once_more(call):
        """A warm-up request whose connection was dropped is sent again once: warming is preparation, the
        schemathesis run that follows is what is checked (and it counts every network error)."""
        try:
            return call()
        except requests.ConnectionError:
            time.sleep(1)
            return call()

    def classify(_):
        return once_more(lambda: requests.post(base + "/api/v1/classify", json={"image_base64": EXAMPLE_PNG_BASE64},
                                               headers=headers, timeout=180).status_code)

    def locate(_):
        return once_more(lambda: requests.get(base + "/api/v1/location", params={"lat": 39.9087, "lon": 116.3975},
                                              headers=headers, timeout=180).status_code)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(classify, range(4))) + list(pool.map(locate, range(4)))
    assert set(answers) == {200}, answers
