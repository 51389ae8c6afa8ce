"""Claimed original hashes (seen only by the claimant) and near-duplicate cache hits, through the API."""
import base64
import hashlib
import io

import pytest

from tests.classify_fixtures import register
from tests.classify_images import package_photo
from xintu.classify.request_log import buffer

COFFEE = package_photo("skimage:coffee.png")
CAT = package_photo("skimage:chelsea.png")
ASTRONAUT = package_photo("skimage:astronaut.png")
FOOD_ANSWER = {"category": "foods", "confidence": 0.93, "description": "一杯意式浓缩咖啡"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copy_of(data: bytes, scale: float = 1.0, quality: int = 80) -> bytes:
    """What the field's clients upload: the photo resized and saved as an 80 % JPEG."""
    from PIL import Image
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _post(client, headers, data, path="/api/v1/classify", **form):
    return client.post(path, headers=headers, data={"image": (io.BytesIO(data), "x.jpg"), **form})


def _check(client, headers, digest):
    one = client.post("/api/v1/classify/check-cache", headers=headers, json={"sha256": digest})
    many = client.post("/api/v1/classify/batch-check-cache", headers=headers, json={"hashes": [digest, "0" * 64]})
    assert one.status_code == 200 and many.status_code == 200, (one.get_json(), many.get_json())
    hit, hits = one.get_json()["hit"], many.get_json()["hits"]
    assert (hit is None) == (digest not in hits)   # both endpoints always agree
    return hit


def test_a_resized_copy_claims_its_original_for_that_device_only(classify_app, dashscope_vl):
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    device, other = register(client), register(client)
    copy = copy_of(COFFEE, 0.8)
    body = _post(client, device, copy, original_sha256=sha(COFFEE).upper()).get_json()
    assert (body["method"], body["sha256"]) == ("llm", sha(copy)) and "near_duplicate" not in body
    hit = _check(client, device, sha(COFFEE))
    assert (hit["category"], hit["method"], hit["description"]) == ("foods", "cache", "一杯意式浓缩咖啡")
    assert _check(client, other, sha(COFFEE)) is None          # a claim never reaches anyone else
    assert _check(client, other, sha(copy))["category"] == "foods"   # the bytes we hashed: for anyone
    # A device that lies about an original only fools itself.
    dashscope_vl.state.answer = {"category": "pets", "confidence": 0.9, "description": "一只猫"}
    liar = register(client)
    assert _post(client, liar, CAT, original_sha256=sha(ASTRONAUT)).get_json()["category"] == "pets"
    assert _check(client, liar, sha(ASTRONAUT))["category"] == "pets"
    assert _check(client, device, sha(ASTRONAUT)) is None and _check(client, other, sha(ASTRONAUT)) is None
    assert dashscope_vl.state.calls == 2


def test_json_and_both_batch_forms_claim_originals(classify_app, dashscope_vl):
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    device, other = register(client), register(client)
    originals = [hashlib.sha256(b"original %d" % i).hexdigest() for i in range(5)]
    copies = [copy_of(COFFEE, 0.9, quality=70 + i) for i in range(5)]   # five distinct uploads
    one = client.post("/api/v1/classify", headers=device, json={
        "image_base64": base64.b64encode(copies[0]).decode(), "original_sha256": originals[0]})
    assert one.status_code == 200, one.get_json()
    batch = client.post("/api/v1/classify/batch", headers=device, json={"images": [
        {"image_base64": base64.b64encode(copies[1]).decode(), "original_sha256": originals[1]},
        {"image_base64": base64.b64encode(copies[2]).decode(), "original_sha256": None}]})   # null = none
    assert [r.get("error") for r in batch.get_json()["results"]] == [None, None]
    multipart = client.post("/api/v1/classify/batch", headers=device, data={
        "images": [(io.BytesIO(copies[3]), "a.jpg"), (io.BytesIO(copies[4]), "b.jpg")],
        "original_sha256": ["", originals[4]]})
    assert [r.get("error") for r in multipart.get_json()["results"]] == [None, None]
    hits = client.post("/api/v1/classify/batch-check-cache", headers=device, json={"hashes": originals}).get_json()
    assert sorted(hits["hits"]) == sorted([originals[0], originals[1], originals[4]])
    assert sorted(hits["missing"]) == sorted([originals[2], originals[3]])
    assert client.post("/api/v1/classify/batch-check-cache", headers=other,
                       json={"hashes": originals}).get_json()["hits"] == {}


def test_a_bound_users_claims_reach_the_users_other_clients_and_a_device_brings_its_claims(classify_app,
                                                                                           dashscope_vl):
    from xintu.auth import issue_token
    from xintu.member.binding import BindingService
    from xintu.models import ClientSession, QrBinding, User
    from xintu.timeutil import utcnow

    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    with classify_app.app_context():
        user = User.create(openid="oCLAIMS1")
        stranger = User.create(openid="oCLAIMS2")
        tokens = [issue_token(client_id=f"pc-{i}", kind="bound", user=u)[0]
                  for i, u in enumerate((user, user, stranger))]
    laptop, phone, strangers = ({"Authorization": f"Bearer {t}"} for t in tokens)
    unbound = register(client)
    copy = copy_of(COFFEE, 0.7)
    assert _post(client, laptop, copy, original_sha256=sha(COFFEE)).status_code == 200
    assert _check(client, phone, sha(COFFEE))["category"] == "foods"      # the same user's other client
    assert _check(client, strangers, sha(COFFEE)) is None and _check(client, unbound, sha(COFFEE)) is None

    # A device claims while unbound, then binds to the user: its claims are the user's from then on.
    device = register(client)
    original = hashlib.sha256(b"the original of the second copy").hexdigest()
    assert _post(client, device, copy_of(COFFEE, 0.6), original_sha256=original).status_code == 200
    assert _check(client, laptop, original) is None
    with classify_app.test_request_context():
        session = ClientSession.get(ClientSession.token_hash == _token_hash(device))
        QrBinding.create(scene="s" * 40, client=session.id, status="bound", user=user.id, bound_at=utcnow(),
                         expires_at=utcnow())
        token = BindingService(classify_app.config).poll(session, "s" * 40)["token"]
    assert _check(client, {"Authorization": f"Bearer {token}"}, original)["category"] == "foods"
    assert _check(client, laptop, original)["category"] == "foods"
    assert _check(client, device, original)["category"] == "foods"
    assert _check(client, strangers, original) is None

    # Personal data: the export lists the user's claims, erasure removes them.
    from xintu.member import privacy
    with classify_app.app_context():
        exported = privacy.export(User.get_by_id(user.id))["classify_claims"]
        assert sorted(c["original_sha256"] for c in exported) == sorted([sha(COFFEE), original])
        assert privacy.forget(User.get_by_id(user.id), "测试注销")["classify_claims_deleted"] == 2
        assert privacy.export(User.get_by_id(user.id))["classify_claims"] == []
    assert _check(client, device, original) is None


def _token_hash(headers) -> str:
    from xintu.auth import hash_token
    return hash_token(headers["Authorization"].split()[1])


def test_a_reencoded_copy_is_a_near_duplicate_hit_without_an_upstream_call(classify_app, dashscope_vl):
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    device, other = register(client), register(client)
    assert _post(client, device, COFFEE).get_json()["method"] == "llm"
    for copy in (copy_of(COFFEE), copy_of(COFFEE, 0.75), copy_of(COFFEE, 1.0, quality=60)):
        body = _post(client, other, copy).get_json()
        assert (body["method"], body["category"], body["near_duplicate"]) == ("cache", "foods", True)
        assert body["sha256"] == sha(copy) and body["description"] == "一杯意式浓缩咖啡"
    batch = client.post("/api/v1/classify/batch", headers=other,
                        data={"images": [(io.BytesIO(copy_of(COFFEE, 0.5)), "half.jpg")]}).get_json()
    assert batch["results"][0]["near_duplicate"] is True and batch["results"][0]["method"] == "cache"
    assert dashscope_vl.state.calls == 1
    # Another photo, and a mirror image, a crop or a grey copy of this one (the same pHash: it sees only
    # brightness; the mean colour differs) are not near-duplicates: the LLM is asked.
    from PIL import Image, ImageOps
    img = Image.open(io.BytesIO(COFFEE)).convert("RGB")
    mirrored, cropped, grey = io.BytesIO(), io.BytesIO(), io.BytesIO()
    ImageOps.mirror(img).save(mirrored, "JPEG", quality=80)
    img.crop((60, 40, img.width, img.height)).save(cropped, "JPEG", quality=80)
    ImageOps.grayscale(img).save(grey, "JPEG", quality=80)
    dashscope_vl.state.answer = {"category": "pets", "confidence": 0.9, "description": "一只猫"}
    for data in (CAT, mirrored.getvalue(), cropped.getvalue(), grey.getvalue()):
        body = _post(client, other, data).get_json()
        assert body["method"] == "llm" and "near_duplicate" not in body
    assert dashscope_vl.state.calls == 5
    # A near-duplicate upload that names its original claims it, pointing to the answer it was given.
    copy = copy_of(COFFEE, 0.9)
    assert _post(client, device, copy, original_sha256="ab" * 32).get_json()["near_duplicate"] is True
    assert _check(client, device, "ab" * 32)["category"] == "foods"
    with classify_app.app_context():
        buffer.flush()


def test_near_duplicates_can_be_switched_off(classify_app, dashscope_vl):
    classify_app.config["CLASSIFY_NEAR_DUPLICATE_DISTANCE"] = -1
    classify_app.extensions.clear()
    dashscope_vl.state.answer = FOOD_ANSWER
    client = classify_app.test_client()
    device = register(client)
    assert _post(client, device, COFFEE).get_json()["method"] == "llm"
    assert _post(client, device, copy_of(COFFEE)).get_json()["method"] == "llm"
    assert dashscope_vl.state.calls == 2


@pytest.mark.parametrize("how,value", [
    ("form", "abc"), ("form", "g" * 64), ("form", "a" * 63), ("form", "a" * 65),
    ("json", 12345), ("json", ["a" * 64]), ("json", "a" * 64 + "\n"), ("json", ""),
    ("batch_json", "zz"), ("batch_form_count", None), ("batch_form", "x" * 64), ("local", "abc")])
def test_a_malformed_original_sha256_is_a_400_with_a_stable_code(classify_app, dashscope_vl, how, value):
    client = classify_app.test_client()
    device = register(client)
    b64 = base64.b64encode(COFFEE).decode()
    if how == "form":
        r = _post(client, device, COFFEE, original_sha256=value)
    elif how == "local":   # checked there too, then ignored
        r = _post(client, device, COFFEE, path="/api/v1/classify/local", original_sha256=value)
    elif how == "json":
        r = client.post("/api/v1/classify", headers=device, json={"image_base64": b64, "original_sha256": value})
    elif how == "batch_json":
        r = client.post("/api/v1/classify/batch", headers=device, json={"images": [
            {"image_base64": b64, "original_sha256": "a" * 64}, {"image_base64": b64, "original_sha256": value}]})
    else:
        originals = ["a" * 64, "b" * 64] if how == "batch_form_count" else [value]
        r = client.post("/api/v1/classify/batch", headers=device, data={
            "images": [(io.BytesIO(COFFEE), "a.png")], "original_sha256": originals})
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"]["code"] == "original_sha256_invalid"
    assert dashscope_vl.state.calls == 0


@pytest.mark.mariadb
def test_claims_and_near_duplicates_on_mariadb(mariadb, mysql_database, tmp_path, classify_model_dir, dashscope_vl):
    from tests.classify_fixtures import _classify_app
    app = _classify_app(tmp_path, {"DATABASE_URL": mariadb.app_url(mysql_database),
                                   "CLASSIFY_MODEL_DIR": classify_model_dir, "DASHSCOPE_API_KEY": "sk-test-key-0001",
                                   "DASHSCOPE_BASE_URL": dashscope_vl.base_url})
    dashscope_vl.state.answer = FOOD_ANSWER
    client = app.test_client()
    device, other = register(client), register(client)
    copy = copy_of(COFFEE, 0.8)
    assert _post(client, device, copy, original_sha256=sha(COFFEE)).get_json()["method"] == "llm"
    assert _post(client, device, copy_of(COFFEE, 0.8, quality=85), original_sha256=sha(COFFEE)).get_json()[
        "near_duplicate"] is True                                  # the same claim again: replaced, no error
    assert _check(client, device, sha(COFFEE))["category"] == "foods"
    assert _check(client, other, sha(COFFEE)) is None
    near = _post(client, other, copy_of(COFFEE, 0.5)).get_json()
    assert (near["method"], near["near_duplicate"]) == ("cache", True)
    assert dashscope_vl.state.calls == 1
    with app.app_context():
        buffer.flush()
        from xintu.models import ClassifyCache, ClassifyClaim
        (row,) = ClassifyCache.select()
        assert row.hits == 4 and None not in (row.phash0, row.phash1, row.phash2, row.phash3)
        assert ClassifyClaim.select().count() == 1
    from xintu import db
    db.close_all()


@pytest.mark.parametrize("which", ["sqlite", "mariadb"])
def test_m0020_upgrades_a_classify_cache_of_the_old_shape_and_is_idempotent(request, which):
    from playhouse.migrate import SchemaMigrator, migrate

    from xintu import db, migrations
    from xintu.migrations import SchemaMigration
    from xintu.models import ClassifyCache

    app = request.getfixturevalue("app" if which == "sqlite" else "mysql_app")
    with app.app_context():
        database = db.primary.obj
        ClassifyCache.create(image_sha256="c" * 64, model_version="qwen3-vl-plus", prompt_version="p1",
                             category="foods", confidence=0.9, source="llm")
        database.execute_sql("DROP TABLE classify_claims")
        migrator = SchemaMigrator.from_database(database)
        for i in range(4):
            index = next(ix.name for ix in database.get_indexes("classify_cache") if ix.columns == [f"phash{i}"])
            migrate(migrator.drop_index("classify_cache", index), migrator.drop_column("classify_cache", f"phash{i}"))
        with SchemaMigration.bind_ctx(database):
            SchemaMigration.delete().where(SchemaMigration.version == 20).execute()
        assert migrations.migrate(database) == [(20, "classify_claims_phash")]
        assert migrations.migrate(database) == []
        assert {f"phash{i}" for i in range(4)} <= migrations.column_names(database, "classify_cache")
        assert {tuple(ix.columns) for ix in database.get_indexes("classify_cache")} >= {
            (f"phash{i}",) for i in range(4)}
        assert database.table_exists("classify_claims")
        assert ClassifyCache.get(ClassifyCache.image_sha256 == "c" * 64).phash0 is None   # the old row is kept


@pytest.mark.parametrize("value,ok", [("3", True), ("-1", True), ("0", True), ("4", False), ("-2", False)])
def test_the_near_duplicate_distance_is_bounded_by_what_the_index_finds(tmp_path, value, ok):
    from xintu.config import load_config
    from xintu.errors import ConfigError
    environ = {"XINTU_CLASSIFY_NEAR_DUPLICATE_DISTANCE": value}
    if ok:
        assert load_config(instance=str(tmp_path), environ=environ)["CLASSIFY_NEAR_DUPLICATE_DISTANCE"] == int(value)
    else:
        with pytest.raises(ConfigError, match="CLASSIFY_NEAR_DUPLICATE_DISTANCE must be 0–3"):
            load_config(instance=str(tmp_path), environ=environ)
