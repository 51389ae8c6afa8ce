"""Fixtures of the image-edit area: the DashScope fake, apps wired to it, paying users, photos."""
from __future__ import annotations

import hashlib
import io
import secrets

import pytest
from PIL import Image

from xintu.sandbox.dashscope_edit import DashScopeEditFake


@pytest.fixture
def dashscope_edit_fake():
    with DashScopeEditFake(api_key="sk-test-" + secrets.token_hex(8)) as fake:
        yield fake


def _edit_config(fake, **extra):
    return {"EDIT_DASHSCOPE_API_KEY": fake.api_key, "EDIT_DASHSCOPE_BASE_URL": fake.api_base,
            "EDIT_POLL_INTERVAL": 0, **extra}


@pytest.fixture
def edit_app(app, dashscope_edit_fake):
    app.config.update(_edit_config(dashscope_edit_fake))
    return app


@pytest.fixture
def mysql_edit_app(mysql_app, dashscope_edit_fake):
    mysql_app.config.update(_edit_config(dashscope_edit_fake))
    return mysql_app


def make_user(app, credits: int):
    """A WeChat user with ``credits`` (granted through a ledger row) and a bound client token."""
    from xintu import db
    from xintu.auth import issue_token
    from xintu.member.credits import CreditService
    from xintu.models import User

    with app.app_context(), db.atomic():
        user = User.create(openid="o" + secrets.token_hex(10))
        if credits:
            CreditService.adjust(user.id, credits, operator="test", note="edit test credits")
        token, _ = issue_token(client_id="test-" + secrets.token_hex(6), kind="bound", user=user)
    return user, {"Authorization": f"Bearer {token}"}


def photo(color: str, size=(64, 48), fmt="JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
