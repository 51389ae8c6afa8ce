"""Fixtures of the image-edit area: the DashScope fake, apps wired to it, photos (users: tests/factories.py)."""
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
    # SANDBOX: the fake serves its result images over http on its own origin, which only the sandbox
    # rule of xintu.edit.results admits (real results: https, EDIT_RESULT_HOSTS).
    return {"EDIT_DASHSCOPE_API_KEY": fake.api_key, "EDIT_DASHSCOPE_BASE_URL": fake.api_base,
            "EDIT_POLL_INTERVAL": 0, "SANDBOX": True, **extra}


@pytest.fixture
def edit_app(app, dashscope_edit_fake):
    app.config.update(_edit_config(dashscope_edit_fake))
    return app


@pytest.fixture
def mysql_edit_app(mysql_app, dashscope_edit_fake):
    mysql_app.config.update(_edit_config(dashscope_edit_fake))
    return mysql_app


def photo(color: str, size=(64, 48), fmt="JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_results_migration(database, migrator) -> None:
    """Put edit_images / edit_cache back in their shape before migration 0032 (no kind, old unique
    key, no stored-result columns), run 0032 twice, and check the new shape."""
    from playhouse.migrate import migrate as run_operations

    from xintu.migrations import column_names, m0032_edit_results

    database.execute_sql("CREATE UNIQUE INDEX edit_images_task_id_position_chunk "
                         "ON edit_images (task_id, position, chunk)")
    for index in database.get_indexes("edit_images"):
        if "kind" in index.columns:
            run_operations(migrator.drop_index("edit_images", index.name))
    run_operations(migrator.drop_column("edit_images", "kind"))
    # SQLite cannot drop a foreign-key column: recreate edit_cache as it was instead.
    from peewee import BigAutoField, CharField, DateTimeField, IntegerField, Model, TextField

    class OldEditCache(Model):
        id = BigAutoField()
        image_sha256, request_sha256, model = CharField(64), CharField(64), CharField(64)
        result_url = TextField()
        hits = IntegerField(default=0)
        created_at, expires_at = DateTimeField(), DateTimeField(index=True)

        class Meta:
            table_name = "edit_cache"
            indexes = ((("image_sha256", "request_sha256", "model"), True),)

    database.bind([OldEditCache])
    database.drop_tables([OldEditCache])
    database.create_tables([OldEditCache])
    assert "kind" not in column_names(database, "edit_images")
    for _ in range(2):
        m0032_edit_results.up(database, migrator)
    assert "kind" in column_names(database, "edit_images")
    assert {"result_task_id", "result_position"} <= column_names(database, "edit_cache")
    uniques = [tuple(i.columns) for i in database.get_indexes("edit_images") if i.unique]
    assert ("task_id", "kind", "position", "chunk") in uniques
    assert ("task_id", "position", "chunk") not in uniques
