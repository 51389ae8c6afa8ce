"""Pure functions tested without a database: the price table, the H5 OAuth state / ticket signing, the
local model's rule table. (What needs MariaDB — concurrency, replication, SQL differences — is tested there.)"""
import time

import pytest
from flask import Flask

from xintu.classify import rules
from xintu.classify.rules import CATEGORIES, RULES, Cues, decide, needs_ocr
from xintu.errors import BadRequest, ConfigError, Unauthorized
from xintu.member import prices
from xintu.wechat import h5

# -- prices -------------------------------------------------------------------------------------------


def test_default_catalogue_is_the_documented_price_table():
    items = prices.catalogue({})
    member = items[("member", "member")]
    assert (member.amount_fen, member.quantity, member.bonus_credits) == (2990, 30, 10)
    assert [(p.quantity, p.amount_fen) for (kind, _), p in items.items() if kind == "credits"] == [
        (10, 990), (20, 1800), (50, 3900)]
    assert all(isinstance(p.amount_fen, int) for p in items.values())   # fen, never yuan floats


def test_instance_overrides_and_a_zero_bonus():
    config = {"PRICE_MEMBER_FEN": 1990, "PRICE_MEMBER_DAYS": 90, "PRICE_MEMBER_BONUS": 0,
              "PRICE_CREDITS": ["5:500", "100:8800"]}
    listed = prices.price_list(config)
    assert listed["member"] == {"package": "member", "amount_fen": 1990, "days": 90, "bonus_credits": 0}
    assert listed["credits"] == [{"package": "5", "credits": 5, "amount_fen": 500},
                                 {"package": "100", "credits": 100, "amount_fen": 8800}]
    assert listed["currency"] == "CNY"


def test_lookup_names_packages_never_amounts():
    assert prices.lookup({}, "member", "anything").package == "member"   # one membership product
    assert prices.lookup({}, "credits", 20).amount_fen == 1800
    for kind, package in (("credits", "7"), ("credits", None), ("gold", "10")):
        with pytest.raises(BadRequest) as err:
            prices.lookup({}, kind, package)
        assert err.value.code == "unknown_package"


@pytest.mark.parametrize("spec", ["10-990", "10:9.9", "ten:990"])
def test_an_unreadable_credit_table_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="PRICE_CREDITS"):
        prices.catalogue({"PRICE_CREDITS": spec})


# -- H5 OAuth state and ticket (itsdangerous / HMAC over SECRET_KEY) --------------------------------------

@pytest.fixture
def bare():
    app = Flask("h5-units")
    app.config.update(SECRET_KEY="k" * 40, ENV="testing")
    return app


def test_state_round_trip_binds_the_return_address_and_the_nonce(bare):
    nonce_h = h5.nonce_hash(h5.new_nonce())
    with bare.test_request_context("/wechat/oauth"):
        state = h5.sign_state("https://h5.example/", nonce_h)
        assert len(state) <= 128   # WeChat's limit on state
        assert h5.check_state(state, "https://h5.example/") == nonce_h
        for forged in (state, state[:-1] + ("0" if state[-1] != "0" else "1")):
            target = "https://evil.example/" if forged == state else "https://h5.example/"
            with pytest.raises(BadRequest) as err:
                h5.check_state(forged, target)
            assert err.value.code == "oauth_state_invalid"


def test_an_old_state_is_refused(bare):
    with bare.test_request_context("/wechat/oauth"):
        old = h5.sign_state("https://h5.example/", "n" * 24, now=int(time.time()) - h5.STATE_AGE - 5)
        with pytest.raises(BadRequest) as err:
            h5.check_state(old, "https://h5.example/")
    assert err.value.code == "oauth_state_invalid"


def test_a_state_made_for_another_browser_is_foreign(bare):
    mine, theirs = h5.new_nonce(), h5.new_nonce()
    with bare.test_request_context("/wechat/oauth", headers={"Cookie": f"{h5.NONCE_COOKIE}={mine}"}):
        assert h5.check_state(h5.sign_state("https://h5.example/", h5.nonce_hash(mine)),
                              "https://h5.example/") == h5.nonce_hash(mine)
        with pytest.raises(BadRequest) as err:
            h5.check_state(h5.sign_state("https://h5.example/", h5.nonce_hash(theirs)), "https://h5.example/")
    assert err.value.code == "oauth_state_foreign"


def test_a_state_signed_with_another_key_is_invalid(bare):
    other = Flask("other")
    other.config.update(SECRET_KEY="x" * 40)
    with other.test_request_context("/"):
        state = h5.sign_state("https://h5.example/", "n" * 24)
    with bare.test_request_context("/"), pytest.raises(BadRequest):
        h5.check_state(state, "https://h5.example/")


def test_a_tampered_or_foreign_ticket_is_refused_before_the_database(bare):
    nonce = h5.new_nonce()
    with bare.test_request_context("/", headers={"Cookie": f"{h5.NONCE_COOKIE}={nonce}"}):
        ticket = h5.make_ticket(42, h5.nonce_hash(nonce))
        with pytest.raises(Unauthorized) as err:
            h5.redeem_ticket(ticket[:-2] + "xx")
        assert err.value.code == "h5_ticket_invalid"
        foreign = h5.make_ticket(42, h5.nonce_hash(h5.new_nonce()))
        with pytest.raises(Unauthorized) as err:
            h5.redeem_ticket(foreign)
        assert err.value.code == "h5_ticket_foreign"
    with bare.test_request_context("/"), pytest.raises(Unauthorized) as err:   # no nonce cookie at all
        h5.redeem_ticket(ticket)
    assert err.value.code == "h5_ticket_foreign"


def test_redirects_only_to_our_own_origins():
    config = {"PUBLIC_BASE_URL": "https://api.example", "H5_BASE_URL": "https://cdn.example/h5/"}
    assert h5.h5_origins(config) == {"https://api.example", "https://cdn.example"}
    assert h5.with_query("https://cdn.example/h5/?a=1&ticket=old", ticket="new") == (
        "https://cdn.example/h5/?a=1&ticket=new")


# -- the local model's rule table --------------------------------------------------------------------------

def test_every_rule_names_one_of_the_eight_categories_and_the_last_always_matches():
    assert {r.category for r in RULES} <= set(CATEGORIES) and len(CATEGORIES) == 8
    assert RULES[-1].test(Cues(width=1, height=1))


@pytest.mark.parametrize("cues,category", [
    (Cues(width=4000, height=3000, camera=True, faces=3, face_score=0.9), "social_activities"),
    (Cues(width=4000, height=3000, camera=True, faces=1, face_score=0.9), "single_person"),
    (Cues(width=1170, height=2532, flat=0.7), "screenshot"),
    (Cues(width=4000, height=3000, camera=True, probs={"cat": 0.5}, pet_peak=0.4), "pets"),
    (Cues(width=4000, height=3000, camera=True, probs={"food": 0.6}), "foods"),
    (Cues(width=4000, height=3000, camera=True, probs={"scenery": 0.4}), "travel_scenery"),
    (Cues(width=800, height=800, flat=0.8, colours=40), "other"),
    (Cues(width=4000, height=3000, camera=True), "other"),
])
def test_first_matching_rule_decides(cues, category):
    got, confidence, description, reason = decide(cues)
    assert got == category and 0 < confidence <= 1 and 0 < len(description) <= 30
    assert reason.startswith("rule")


def test_faces_outrank_pets_and_a_screen_outranks_faces():
    assert decide(Cues(width=4000, height=3000, camera=True, faces=1, face_score=1.0, probs={"dog": 0.9},
                       pet_peak=0.5))[0] == "single_person"
    assert decide(Cues(width=1080, height=1920, flat=0.6, faces=4, face_score=0.9))[0] == "screenshot"


def test_a_little_pet_mass_spread_over_breeds_is_not_a_pet():
    spread = Cues(width=4000, height=3000, camera=True, probs={"dog": 0.2}, pet_peak=0.01)
    assert not rules._pets(spread) and decide(spread)[0] == "other"


def test_ocr_runs_only_where_a_card_or_a_screen_is_possible():
    assert needs_ocr(Cues(width=1080, height=2340))
    assert needs_ocr(Cues(width=856, height=540, probs={"text": 0.06}))   # card-shaped with a little text
    assert not needs_ocr(Cues(width=4000, height=3000, camera=True, probs={"food": 0.9}))
