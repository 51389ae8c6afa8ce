"""`xintu qrcode / credits / orders / users`: thin callers of the member services, with --format."""
import json

import pytest

from tests.factories import make_user
from xintu.models import QrBinding


@pytest.fixture
def xintu(member_stack):
    return member_stack.cli


@pytest.fixture
def user_id(member_stack):
    with member_stack.in_app():
        return make_user(balance=10, openid="oCLIUSER", reason="signup_bonus").id


@pytest.mark.parametrize("suffix,magic", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_qrcode_issue_writes_an_image_and_a_pollable_binding(xintu, member_stack, tmp_path, suffix, magic):
    out = tmp_path / f"qr.{suffix}"
    result = xintu("qrcode", "issue", "--client-id", "kiosk-0001", "-o", str(out), "--format", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert out.read_bytes().startswith(magic)
    member_stack.sandbox.mp.simulate_scan(info["scene"], "oKIOSKUSER")
    with member_stack.in_app():
        assert QrBinding.get(QrBinding.scene == info["scene"]).status == "bound"


def test_credits_show_adjust_audit(xintu, member_stack, user_id):
    assert "balance 10" in xintu("credits", "show", str(user_id)).output
    result = xintu("credits", "adjust", str(user_id), "-3", "--reason", "测试扣减", "--operator", "ops1",
                   "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["balance"] == 7
    shown = json.loads(xintu("credits", "show", "oCLIUSER", "--format", "json").output)
    assert shown["balance"] == 7 and shown["ledger"][0]["operator"] == "ops1"
    assert xintu("credits", "audit").exit_code == 0
    # drift introduced behind the service's back is found, and the exit code says so
    from xintu.models import User
    with member_stack.in_app():
        User.update(credits_balance=99).where(User.id == user_id).execute()
    result = xintu("credits", "audit", "--format", "csv")
    assert result.exit_code == 1 and f"{user_id},99,7,92" in result.output


def test_cli_errors_are_one_line_and_non_zero(xintu, user_id):
    for args in (["credits", "adjust", str(user_id), "-50", "--reason", "x"],
                 ["credits", "show", "nobody"], ["users", "show", "999999"],
                 ["credits", "adjust", str(user_id), "abc", "--reason", "x"]):
        result = xintu(*args)
        assert result.exit_code != 0
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "积分不足" in xintu("credits", "adjust", str(user_id), "-50", "--reason", "x").output
    # the same cap as the 管理后台 (one rule, in the credit service)
    too_big = xintu("credits", "adjust", str(user_id), "+100001", "--reason", "x")
    assert too_big.exit_code != 0 and "100000" in too_big.output and too_big.output.startswith("Error: ")


def test_users_and_orders_listings(xintu, member_stack, user_id):
    http = member_stack.h5_login("oCLIUSER")
    order = member_stack.buy(http, "credits", "10")
    rows = json.loads(xintu("orders", "list", "--status", "created", "--format", "json").output)
    assert [r["out_trade_no"] for r in rows] == [order["out_trade_no"]]
    assert xintu("orders", "list", "--status", "paid", "--format", "json").output.strip() == "[]"
    shown = json.loads(xintu("users", "show", "oCLIUSER", "--format", "json").output)
    assert shown["id"] == user_id and shown["credits"] == 10
    listed = xintu("users", "list", "--format", "csv").output.splitlines()
    assert listed[0].startswith("id,openid") and any("oCLIUSER" in line for line in listed[1:])
