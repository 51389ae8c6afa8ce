"""edit_tasks.model: the upstream model a task was accepted for."""
from peewee import CharField

from xintu.migrations import add_column_if_missing


def up(db, migrator):
    add_column_if_missing(db, migrator, "edit_tasks", "model", CharField(64, null=True))
