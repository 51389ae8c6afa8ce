"""The data of xintu (docs/ARCHITECTURE.md, "Data") as peewee models.  Times are naive UTC; money is integer fen.

MySQL types are chosen for the data: VARCHAR with real bounds, BIGINT ids on append-only tables,
utf8mb4 (set on the database by the first migration) for Chinese text and emoji nicknames.
A change here needs a migration in ``xintu/migrations`` (see that package's docstring).
"""

from __future__ import annotations

import json

from peewee import (
    BigAutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    SmallIntegerField,
    TextField,
)
from playhouse.shortcuts import ThreadSafeDatabaseMetadata

from xintu.db import primary, register_model
from xintu.timeutil import utcnow


class JSONField(TextField):
    """JSON stored as text: portable between MariaDB and SQLite."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = primary
        model_metadata_class = ThreadSafeDatabaseMetadata
        legacy_table_names = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register_model(cls)   # xintu.db's registry: stale reads rebind every model to the replica


class User(BaseModel):
    openid = CharField(64, unique=True)
    unionid = CharField(64, null=True, index=True)
    nickname = CharField(64, null=True)
    subscribed = BooleanField(default=False)
    member_expires_at = DateTimeField(null=True, index=True)
    credits_balance = IntegerField(default=0)   # cache of SUM(credit_ledger.delta); audited
    created_at = DateTimeField(default=utcnow, index=True)
    last_active_at = DateTimeField(default=utcnow)
    forgotten_at = DateTimeField(null=True)   # set by erasure: the row is then a tombstone (no identity)

    class Meta:
        table_name = "users"

    @property
    def is_member(self) -> bool:
        return self.member_expires_at is not None and self.member_expires_at > utcnow()


class CreditLedger(BaseModel):
    id = BigAutoField()
    user = ForeignKeyField(User, backref="ledger", on_delete="RESTRICT")
    delta = IntegerField()
    reason = CharField(32)   # signup_bonus, membership_bonus, purchase, edit_spend, edit_refund, admin_adjust
    ref = CharField(64, null=True)   # order no / task id; unique per reason so a grant never repeats
    balance_after = IntegerField()
    operator = CharField(64, null=True)
    note = CharField(255, null=True)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "credit_ledger"
        indexes = ((("reason", "ref"), True),)


class ClientSession(BaseModel):
    """A device token (``kind='device'``) or a client bound to a WeChat user (``kind='bound'``)."""

    id = BigAutoField()
    token_hash = CharField(64, unique=True)
    kind = CharField(16, default="device")
    client_id = CharField(64, index=True)
    user = ForeignKeyField(User, null=True, backref="client_sessions", on_delete="CASCADE")
    platform = CharField(16, null=True)
    created_ip = CharField(45, null=True)
    created_net = CharField(45, null=True)    # the address for IPv4, its /64 for IPv6 (registration limit)
    created_at = DateTimeField(default=utcnow, index=True)
    last_seen_at = DateTimeField(default=utcnow)
    last_ip = CharField(45, null=True)
    revoked_at = DateTimeField(null=True)
    revoked_reason = CharField(16, null=True)   # logout / user / operator / unsubscribe / expired / forgotten

    class Meta:
        table_name = "client_sessions"
        indexes = ((("created_ip", "created_at"), False), (("created_net", "created_at"), False))


class ForgottenIdentity(BaseModel):
    """What stays of an erased WeChat identity: a keyed hash of its openid (HMAC, key from SECRET_KEY),
    so the same person following again gets no second signup bonus, and nothing that names them."""

    openid_hash = CharField(64, unique=True)
    user = ForeignKeyField(User, backref="tombstones", on_delete="CASCADE")   # the tombstone row
    reason = CharField(255)
    forgotten_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "forgotten_identities"


class QrBinding(BaseModel):
    scene = CharField(64, unique=True)
    client = ForeignKeyField(ClientSession, backref="bindings", on_delete="CASCADE")   # who asked
    status = CharField(16, default="pending")   # pending / scanned / bound / expired
    ticket = CharField(255, null=True)
    url = CharField(255, null=True)
    user = ForeignKeyField(User, null=True, backref="bindings", on_delete="CASCADE")
    client_token_hash = CharField(64, null=True)
    token_delivered = BooleanField(default=False)
    expires_at = DateTimeField(index=True)
    created_at = DateTimeField(default=utcnow)
    bound_at = DateTimeField(null=True)

    class Meta:
        table_name = "qr_bindings"


class WechatEvent(BaseModel):
    """Events already handled, so WeChat's retries (3× when we answer late) are processed once."""

    id = BigAutoField()
    dedupe_key = CharField(128, unique=True)
    openid = CharField(64)
    event = CharField(32)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "wechat_events"


class Order(BaseModel):
    out_trade_no = CharField(32, unique=True)
    user = ForeignKeyField(User, backref="orders", on_delete="RESTRICT")
    kind = CharField(16)          # member / credits
    package = CharField(16)
    quantity = IntegerField(default=1)
    amount_fen = IntegerField()
    # created / paid / closed / refunding / partially_refunded / refunded
    status = CharField(20, default="created", index=True)
    prepay_id = CharField(64, null=True)
    transaction_id = CharField(64, null=True, unique=True)
    created_at = DateTimeField(default=utcnow, index=True)
    paid_at = DateTimeField(null=True, index=True)
    closed_at = DateTimeField(null=True)
    time_expire = DateTimeField(null=True)        # sent in the prepay: WeChat refuses payment after it
    # What the order grants, fixed at creation (a later price change does not alter a paid order).
    grant_days = IntegerField(default=0)
    grant_credits = IntegerField(default=0)
    refunded_fen = IntegerField(default=0)        # sum of successful refunds

    class Meta:
        table_name = "orders"


class Refund(BaseModel):
    """A refund of (part of) an order: started here (CLI, 管理后台, paid-after-close) or in the merchant
    portal (then created from WeChat's notification). What it took back is recorded when it succeeds."""

    id = BigAutoField()
    out_refund_no = CharField(64, unique=True)
    order = ForeignKeyField(Order, backref="refunds", on_delete="RESTRICT")
    amount_fen = IntegerField()
    reason = CharField(80, null=True)
    operator = CharField(64, null=True)
    source = CharField(16, default="cli")     # cli / admin / auto / merchant
    # processing / success / abnormal / closed (WeChat's refund states) or failed (refused by WeChat)
    status = CharField(16, default="processing", index=True)
    refund_id = CharField(64, null=True)       # WeChat's
    sent = BooleanField(default=False)         # WeChat acknowledged the request (or it came from WeChat)
    error = CharField(255, null=True)
    credits_taken = IntegerField(default=0)
    credits_shortfall = IntegerField(default=0)   # credits already spent, not recoverable
    member_seconds_taken = BigIntegerField(default=0)
    created_at = DateTimeField(default=utcnow, index=True)
    updated_at = DateTimeField(default=utcnow)
    succeeded_at = DateTimeField(null=True)

    class Meta:
        table_name = "refunds"


class ClassifyCache(BaseModel):
    id = BigAutoField()
    image_sha256 = CharField(64)
    model_version = CharField(48)
    prompt_version = CharField(16)
    category = CharField(32)
    confidence = FloatField()
    description = CharField(64, null=True)
    source = CharField(16)
    created_at = DateTimeField(default=utcnow)
    hits = IntegerField(default=0)
    last_hit_at = DateTimeField(null=True)
    # The 64-bit perceptual hash of the image (xintu.classify.phash) as four indexed 16-bit bands, on LLM
    # answers only: one query finds every stored answer within Hamming distance 3. Null = none stored.
    phash0 = IntegerField(null=True, index=True)
    phash1 = IntegerField(null=True, index=True)
    phash2 = IntegerField(null=True, index=True)
    phash3 = IntegerField(null=True, index=True)
    mean_rgb = IntegerField(null=True)     # mean colour 0xRRGGBB: a near-duplicate must agree on it too

    class Meta:
        table_name = "classify_cache"
        indexes = ((("image_sha256", "model_version", "prompt_version"), True),)


class ClassifyClaim(BaseModel):
    """A client's word that the image it uploaded (``image_sha256``, computed by us) is a copy of its
    original (``original_sha256``, the hash the client computed). Seen only by the claimant: the device
    session that made it and, once that device is bound or when a bound client made it, the WeChat user."""

    id = BigAutoField()
    original_sha256 = CharField(64)
    image_sha256 = CharField(64)
    session = ForeignKeyField(ClientSession, backref="claims", on_delete="CASCADE")
    user = ForeignKeyField(User, null=True, backref="claims", on_delete="CASCADE")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "classify_claims"
        indexes = ((("original_sha256", "session"), True), (("original_sha256", "user"), False))


class RequestLog(BaseModel):
    id = BigAutoField()
    ts = DateTimeField(default=utcnow, index=True)
    endpoint = CharField(64)
    client = CharField(64, null=True)
    method = CharField(16, null=True)     # cache / llm / local / llm_fallback / …
    category = CharField(32, null=True)
    latency_ms = IntegerField(default=0)
    ok = BooleanField(default=True)
    status = SmallIntegerField(default=200)
    batch_size = SmallIntegerField(null=True)

    class Meta:
        table_name = "request_log"


class DailyStat(BaseModel):
    """Roll-up of request_log and friends: one number per (Asia/Shanghai day, metric, key)."""

    id = BigAutoField()
    day = DateField()
    metric = CharField(48)
    key = CharField(64, default="")
    value = BigIntegerField(default=0)

    class Meta:
        table_name = "daily_stats"
        indexes = ((("day", "metric", "key"), True),)


class EditTask(BaseModel):
    task_id = CharField(32, unique=True)
    user = ForeignKeyField(User, backref="edit_tasks", on_delete="RESTRICT")
    prompt = TextField()
    options = JSONField(null=True)
    model = CharField(64, null=True)     # upstream model chosen at submit time (part of the cache key)
    images = JSONField()                 # per image: sha256, stored path, status, result url, error
    n_images = SmallIntegerField()
    status = CharField(16, default="queued", index=True)   # queued / running / succeeded / partial / failed
    upstream_ids = JSONField(null=True)
    credits_reserved = IntegerField(default=0)
    credits_charged = IntegerField(default=0)
    credits_refunded = IntegerField(default=0)
    error = CharField(255, null=True)
    claimed_by = CharField(64, null=True)
    claimed_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow, index=True)
    updated_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "edit_tasks"


class LongBlobField(BlobField):
    # MySQL's BLOB stops at 64 KB; SQLite reads any type name containing "BLOB" as a blob.
    field_type = "LONGBLOB"


class EditImage(BaseModel):
    """A photo of an edit task kept in the DB (the only state shared with workers and web hosts):
    ``kind`` "upload" (the client's photo, deleted when the task ends) or "result" (the edited image
    downloaded from upstream, whose URLs expire; kept and served to the owner). Stored in pieces of
    ≤ 4 MB: pymysql sends bytes as hex, so one 10 MB photo would be a 20 MB statement, above
    MariaDB's default max_allowed_packet."""

    id = BigAutoField()
    task = ForeignKeyField(EditTask, backref="uploads", on_delete="CASCADE")
    kind = CharField(8, default="upload")
    position = SmallIntegerField()
    chunk = SmallIntegerField(default=0)
    mime = CharField(32)
    data = LongBlobField()

    class Meta:
        table_name = "edit_images"
        indexes = ((("task", "kind", "position", "chunk"), True),)

    @classmethod
    def load(cls, task_pk: int, position: int, kind: str = "upload") -> tuple[bytes, str]:
        """One stored image put together from its pieces: (bytes, mime); LookupError when it is gone."""
        pieces = list(cls.select().where(cls.task == task_pk, cls.kind == kind, cls.position == position)
                      .order_by(cls.chunk))
        if not pieces:
            raise LookupError(f"{kind} {position} of task {task_pk} is gone")
        return b"".join(bytes(p.data) for p in pieces), pieces[0].mime


class EditCache(BaseModel):
    """(image, instruction, model) → the stored result (edit_images kind "result" of
    ``result_task`` at ``result_position``), so an identical edit is served without charge.
    ``result_url`` is upstream's original, short-lived URL: kept for operators, never served."""

    id = BigAutoField()
    image_sha256 = CharField(64)
    request_sha256 = CharField(64)   # prompt + options
    model = CharField(64)
    result_url = TextField()
    result_task = ForeignKeyField(EditTask, null=True, on_delete="CASCADE", column_name="result_task_id")
    result_position = SmallIntegerField(null=True)
    hits = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)

    class Meta:
        table_name = "edit_cache"
        indexes = ((("image_sha256", "request_sha256", "model"), True),)


class Release(BaseModel):
    platform = CharField(16)      # windows / mac / android
    version = CharField(32)
    filename = CharField(255)
    sha256 = CharField(64)
    size = BigIntegerField()
    notes = TextField(null=True)
    downloads = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "releases"
        indexes = ((("platform", "version"), True),)


class WechatToken(BaseModel):
    app_id = CharField(64, unique=True)
    access_token = CharField(512, null=True)
    expires_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)
    forced_at = DateTimeField(null=True)  # last stable_token force_refresh (WeChat: ≥ 30 s apart)

    class Meta:
        table_name = "wechat_tokens"


class Admin(BaseModel):
    username = CharField(64, unique=True)
    password_hash = CharField(255)
    role = CharField(16, default="viewer")   # viewer / operator
    failed_logins = SmallIntegerField(default=0)
    locked_until = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    last_login_at = DateTimeField(null=True)

    class Meta:
        table_name = "admins"


class AdminSession(BaseModel):
    """A 管理后台 login: bearer token stored hashed; dies when idle too long, at expires_at or logout."""

    id = BigAutoField()
    admin = ForeignKeyField(Admin, backref="sessions", on_delete="CASCADE")
    token_hash = CharField(64, unique=True)
    ip = CharField(45, null=True)
    created_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)

    class Meta:
        table_name = "admin_sessions"


class AdminLoginAttempt(BaseModel):
    """Every admin login attempt: the per-address rate limit counts failures here; also an audit trail."""

    id = BigAutoField()
    ip = CharField(45)
    username = CharField(64)
    ok = BooleanField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "admin_login_attempts"
        indexes = ((("ip", "created_at"), False),)


class Setting(BaseModel):
    """Runtime switches shared by every worker (e.g. ``inference.mode``); see settings_store."""

    key = CharField(64, primary_key=True)
    value = JSONField()
    updated_at = DateTimeField(default=utcnow)
    updated_by = CharField(64, null=True)

    class Meta:
        table_name = "settings"


class WechatNonce(BaseModel):
    """(timestamp, nonce, signature) of WeChat callbacks already accepted: each is accepted once.

    Only signatures within the freshness window can be accepted at all, so rows older than twice the
    window are deleted as new ones arrive."""

    id = BigAutoField()
    key = CharField(64, unique=True)            # sha256 of "timestamp:nonce:signature"
    body_hash = CharField(64, null=True)        # sha256 of the body: the same request again is a re-send
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "wechat_nonces"


class UsageCounter(BaseModel):
    """Abuse budgets shared by every worker (xintu.budgets): one row per key and time window."""

    id = BigAutoField()
    key = CharField(128)                         # e.g. "llm:device:42", "qr:net:2001:db8::/64"
    window = CharField(16)                       # "2026-12-01" (day, Asia/Shanghai) or "2026-12-01T08" (hour)
    count = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "usage_counters"
        indexes = ((("key", "window"), True),)


ALL_MODELS = (User, CreditLedger, ClientSession, ForgottenIdentity, QrBinding, WechatEvent, Order, Refund,
              ClassifyCache, ClassifyClaim, RequestLog, DailyStat, EditTask, EditImage, EditCache, Release,
              WechatToken, Admin, AdminSession, AdminLoginAttempt, Setting, WechatNonce, UsageCounter)
