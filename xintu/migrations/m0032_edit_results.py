"""Edit results kept in our DB: edit_images.kind (upload | result, part of the unique key) and
edit_cache.result_task_id / result_position (where the cached result is stored).

Cache rows from before (upstream URLs only) get no stored result and are simply not hits any more.
"""
from peewee import CharField, ForeignKeyField, SmallIntegerField
from playhouse.migrate import migrate as run_operations

from xintu.migrations import add_column_if_missing, add_index_if_missing


def up(db, migrator):
    from xintu.models import EditTask

    add_column_if_missing(db, migrator, "edit_images", "kind", CharField(8, default="upload"))
    # New unique key first: on MySQL the old one may be what the task_id foreign key leans on.
    add_index_if_missing(db, migrator, "edit_images", ("task_id", "kind", "position", "chunk"), unique=True)
    for index in db.get_indexes("edit_images"):
        if tuple(index.columns) == ("task_id", "position", "chunk"):
            run_operations(migrator.drop_index("edit_images", index.name))
    add_column_if_missing(db, migrator, "edit_cache", "result_task_id",
                          ForeignKeyField(EditTask, null=True, on_delete="CASCADE", field=EditTask.id))
    add_column_if_missing(db, migrator, "edit_cache", "result_position", SmallIntegerField(null=True))
