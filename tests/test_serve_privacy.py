"""Against a running `xintu serve` (a subprocess on a temp instance, the venv's own `xintu`): logout ends a
device token; a user made with `xintu sandbox scan` (and who bought credits with `xintu sandbox buy`, through
the H5 OAuth nonce) is in `xintu users export`; `xintu users forget` erases the openid, kills the bound
token and leaves `xintu credits audit` clean."""
import json
import sys
from pathlib import Path

import requests

XINTU = str(Path(sys.executable).with_name("xintu"))


def test_logout_export_forget_against_xintu_serve(served):
    base, cli = served
    device = requests.post(base + "/api/v1/clients", timeout=10,
                           json={"client_id": "pc-serve-0001", "platform": "windows"}).json()["token"]
    assert requests.post(base + "/api/v1/auth/logout", headers={"Authorization": f"Bearer {device}"},
                         timeout=10).status_code == 204
    dead = requests.post(base + "/api/v1/auth/wechat/qrcode", headers={"Authorization": f"Bearer {device}"},
                         timeout=10)
    assert dead.status_code == 401 and dead.json()["error"]["code"] == "token_revoked"

    issued = json.loads(cli("qrcode", "issue", "--client-id", "pc-serve-0002", "-o", "qr.png",
                            "--format", "json").stdout)
    scanned = json.loads(cli("sandbox", "scan", issued["scene"], "--openid", "o_serve_priv",
                             "--format", "json").stdout)
    assert "客户端登录成功" in scanned["reply"] and "我的设备" in scanned["reply"]
    bound = requests.get(base + "/api/v1/auth/wechat/binding", params={"scene": issued["scene"]},
                         headers={"Authorization": f"Bearer {issued['device_token']}"}, timeout=10).json()
    token = bound["token"]
    assert requests.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200
    order = json.loads(cli("sandbox", "buy", "o_serve_priv", "credits:10", "--format", "json").stdout)
    assert order["status"] == "paid"

    user_id = json.loads(cli("users", "show", "o_serve_priv", "--format", "json").stdout)["id"]
    sessions = json.loads(cli("users", "sessions", "--user-id", str(user_id), "--format", "json").stdout)
    assert [s["platform"] for s in sessions] == ["other"] and sessions[0]["active"]
    exported = json.loads(cli("users", "export", "--user-id", str(user_id), "--format", "json").stdout)
    assert exported["profile"]["openid"] == "o_serve_priv"
    assert [o["amount_fen"] for o in exported["orders"]] == [990]

    forgotten = cli("users", "forget", "--user-id", str(user_id), "--reason", "用户来信要求注销",
                    "--format", "json")
    assert json.loads(forgotten.stdout)["sessions_revoked"] == 1
    after = cli("users", "export", "--user-id", str(user_id), "--format", "json").stdout
    assert "o_serve_priv" not in after and json.loads(after)["orders"][0]["amount_fen"] == 990
    me = requests.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.status_code == 401 and me.json()["error"]["code"] == "token_revoked"
    audit = cli("credits", "audit", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr
