"""ModelClient: strict answer validation, bounded retries, and no global SDK state touched."""
import pytest

from tests.classify_images import package_photo
from xintu.classify.model_client import LlmFailure, ModelClient, parse_answer


@pytest.mark.parametrize("text", [
    '{"category": "pets", "confidence": 0.9, "description": "一只猫"}',
    '```json\n{"category": "pets", "confidence": 1, "description": "一只猫"}\n```',
])
def test_valid_answers(text):
    answer = parse_answer(text)
    assert (answer.category, answer.description) == ("pets", "一只猫") and 0.9 <= answer.confidence <= 1


@pytest.mark.parametrize("text, reason", [
    ("这是一只猫", "bad_json"),
    ('好的：{"category": "pets", "confidence": 0.9, "description": "猫"}', "bad_json"),
    ('["pets"]', "bad_json"),
    ('{"category": "cat", "confidence": 0.9, "description": "猫"}', "bad_category"),
    ('{"category": "pets", "confidence": 1.5, "description": "猫"}', "bad_confidence"),
    ('{"category": "pets", "confidence": true, "description": "猫"}', "bad_confidence"),
    ('{"category": "pets", "confidence": "high", "description": "猫"}', "bad_confidence"),
    ('{"category": "pets", "confidence": 0.9}', "bad_description"),
    ('{"category": "pets", "confidence": 0.9, "description": "  "}', "bad_description"),
    ("", "bad_json"),
])
def test_invalid_answers_are_failures(text, reason):
    with pytest.raises(LlmFailure) as err:
        parse_answer(text)
    assert err.value.reason == reason


def test_long_description_is_cut_to_30_characters():
    answer = parse_answer('{"category": "foods", "confidence": 0.8, "description": "' + "美" * 50 + '"}')
    assert len(answer.description) == 30


@pytest.mark.parametrize("mode, calls, reason", [("error500", 2, "http_500"), ("error429", 2, "http_429"),
                                                 ("garbage", 1, "bad_json"), ("bad_category", 1, "bad_category")])
def test_retries_are_bounded_and_only_for_transient_errors(dashscope_vl, mode, calls, reason):
    dashscope_vl.state.configure(mode=mode)
    client = ModelClient("sk-test-key-0001", base_url=dashscope_vl.base_url, timeout=2, retries=1, backoff=0.01)
    with pytest.raises(LlmFailure) as err:
        client.classify(package_photo("skimage:coffee.png"), "image/png")
    assert err.value.reason == reason and dashscope_vl.state.calls == calls


def test_timeout_is_a_failure_not_a_hang(dashscope_vl):
    import time
    dashscope_vl.state.configure(mode="hang")
    client = ModelClient("sk-test-key-0001", base_url=dashscope_vl.base_url, timeout=0.3, retries=0)
    started = time.monotonic()
    with pytest.raises(LlmFailure) as err:
        client.classify(b"\xff\xd8\xff", "image/jpeg")
    assert err.value.reason == "transport" and time.monotonic() - started < 5


def test_wrong_key_is_a_failure(dashscope_vl):
    with pytest.raises(LlmFailure) as err:
        ModelClient("bad", base_url=dashscope_vl.base_url).classify(b"x", "image/png")
    assert err.value.reason == "http_401"


def test_the_sdk_base_url_is_per_call_not_global(dashscope_vl):
    import dashscope
    before = dashscope.base_http_api_url
    dashscope_vl.state.answer = {"category": "foods", "confidence": 0.9, "description": "咖啡"}
    answer = ModelClient("sk-test-key-0001", base_url=dashscope_vl.base_url).classify(b"img", "image/png")
    assert answer.category == "foods" and dashscope.base_http_api_url == before
