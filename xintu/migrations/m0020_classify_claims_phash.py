"""Classify cache: perceptual-hash bands and mean colour on classify_cache (near-duplicate hits) and classify_claims
(a client's original hash, seen only by that client)."""
from peewee import IntegerField

from xintu.migrations import add_column_if_missing, add_index_if_missing


def up(db, migrator):
    from xintu.models import ClassifyClaim

    for i in range(4):
        add_column_if_missing(db, migrator, "classify_cache", f"phash{i}", IntegerField(null=True))
        add_index_if_missing(db, migrator, "classify_cache", (f"phash{i}",))
    add_column_if_missing(db, migrator, "classify_cache", "mean_rgb", IntegerField(null=True))
    with db.bind_ctx([ClassifyClaim]):
        db.create_tables([ClassifyClaim], safe=True)
