"""Versioned migrations on SQLite (embedded default) and on the real MariaDB primary."""

from click.testing import CliRunner
from PIL import Image

from xintu import db, migrations
from xintu.models import ALL_MODELS, User


def test_migrations_apply_twice_without_change_on_sqlite(app):
    with app.app_context():
        assert migrations.migrate(db.primary.obj) == []
        assert migrations.current_version(db.primary.obj) == max(v for v, _, _ in migrations.discover())
        tables = set(db.primary.get_tables())
    assert {model._meta.table_name for model in ALL_MODELS} <= tables


def test_migrations_apply_twice_without_change_on_mariadb(mysql_app):
    with mysql_app.app_context():
        before = {t: [c.name for c in db.primary.get_columns(t)] for t in db.primary.get_tables()}
        assert migrations.migrate(db.primary.obj) == []
        after = {t: [c.name for c in db.primary.get_columns(t)] for t in db.primary.get_tables()}
        assert before == after
        statuses = migrations.status(db.primary.obj)
    assert all(row["applied_at"] is not None for row in statuses)


def test_mariadb_tables_are_innodb_utf8mb4_and_keep_emoji(mysql_app, mysql_database):
    with mysql_app.app_context():
        rows = db.primary.execute_sql(
            "SELECT table_name, engine, table_collation FROM information_schema.tables "
            "WHERE table_schema = %s", (mysql_database,)).fetchall()
        assert rows and all(engine == "InnoDB" and collation.startswith("utf8mb4") for _, engine, collation in rows)
        User.create(openid="o-emoji", nickname="小芯😀相册")
        assert User.get(User.openid == "o-emoji").nickname == "小芯😀相册"


def test_db_cli_migrate_and_status(tmp_path, monkeypatch):
    from xintu_cli.main import cli

    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "migrate"])
    assert first.exit_code == 0 and "applied 0001_initial" in first.output
    second = runner.invoke(cli, ["db", "migrate"])
    assert second.exit_code == 0 and "nothing to do" in second.output
    listed = runner.invoke(cli, ["db", "status", "--format", "csv"])
    assert listed.exit_code == 0 and listed.output.splitlines()[0] == "version,name,state,applied_at"
    assert ",initial,applied," in listed.output


def test_a_fresh_sqlite_instance_needs_no_migrate_command(tmp_path, monkeypatch):
    from xintu_cli.main import cli

    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path))
    result = CliRunner().invoke(cli, ["release", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[]"


def test_a_mariadb_schema_that_is_behind_is_named_in_one_line(mariadb, mysql_database, tmp_path, monkeypatch):
    from xintu_cli.main import cli

    monkeypatch.setenv("XINTU_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("XINTU_DATABASE_URL", mariadb.app_url(mysql_database))   # an empty database
    behind = [f"Error: the database schema is behind ({len(migrations.discover())} migration(s) pending, "
              "first 0001_initial): run `xintu db migrate`"]
    photo = tmp_path / "a.png"
    Image.new("RGB", (32, 32), "red").save(photo)
    classified = CliRunner().invoke(cli, ["classify", str(photo), "--method", "local", "--silent"])
    assert classified.exit_code == 1 and classified.output.strip().splitlines() == behind
    result = CliRunner().invoke(cli, ["users", "list"])   # still behind: classify did not migrate either
    assert result.exit_code == 1 and result.output.strip().splitlines() == behind
    assert CliRunner().invoke(cli, ["db", "migrate"]).exit_code == 0     # db commands never refuse
    assert CliRunner().invoke(cli, ["users", "list"]).exit_code == 0
