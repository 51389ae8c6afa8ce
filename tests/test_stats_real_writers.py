"""StatsService counts what the other areas' real code paths write: classification over HTTP (Qwen-VL
through the real SDK against the fake, with its request_log buffer), a WeChat follow through the
sandbox (user + signup bonus via CreditService), a WeChat Pay membership purchase — on MariaDB."""
import io

import pytest

from tests.classify_images import package_photo
from xintu.classify.request_log import buffer
from xintu.stats.service import StatsService
from xintu.timeutil import local_today

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]
COFFEE = package_photo("skimage:coffee.png")
CAT = package_photo("skimage:chelsea.png")


def test_stats_count_what_the_real_writers_wrote(mysql_member_stack, classify_model_dir, dashscope_vl, mariadb):
    import requests

    stack = mysql_member_stack
    stack.app.config.update(CLASSIFY_MODEL_DIR=classify_model_dir, DASHSCOPE_API_KEY="sk-test-key-0001",
                            DASHSCOPE_BASE_URL=dashscope_vl.base_url, CLASSIFY_LLM_TIMEOUT=2.0,
                            CLASSIFY_LLM_RETRIES=0)
    stack.app.extensions.pop("xintu.classify", None)
    headers = {"Authorization": "Bearer " + stack.register_device()}

    def classify(image):
        response = requests.post(stack.url + "/api/v1/classify", headers=headers, timeout=30,
                                 files={"image": ("x.png", io.BytesIO(image), "image/png")})
        assert response.status_code == 200, response.text
        return response.json()["method"]

    dashscope_vl.state.answer = {"category": "foods", "confidence": 0.93, "description": "一杯咖啡"}
    assert [classify(COFFEE), classify(COFFEE)] == ["llm", "cache"]
    dashscope_vl.state.configure(mode="error500")
    assert classify(CAT) == "llm_fallback"

    status, _ = stack.sandbox.mp.simulate_subscribe("oSTATS1")
    assert status == 200
    http = stack.h5_login("oSTATS1")
    order = stack.buy(http, "member")
    assert stack.sandbox.pay.simulate_payment(stack.prepay_id(order)) == [204]

    with stack.in_app():
        assert buffer.flush() >= 0   # the classify area's buffered request_log rows reach the primary
    mariadb.wait_replica()
    with stack.in_app():
        today = StatsService().summary(local_today(), local_today())
        members = StatsService().members()
    assert today.methods == {"llm": 1, "cache": 1, "llm_fallback": 1}
    assert today.categories == {"foods": 2, "pets": 1}
    assert today.requests == 3 and today.failed == 0
    assert today.cache_hit_ratio == round(1 / 3, 4) and today.llm_success_ratio == 0.5
    assert today.new_users == 1 and today.new_followers == 1
    assert (today.orders_paid, today.revenue_fen, today.revenue_by_kind) == (1, 2990, {"member": 2990})
    assert today.credits_granted == 20   # 10 for following + 10 with the membership
    assert members["members_active"] == 1 and members["members_expiring_7d"] == 0
