"""``xintu edit`` (image edit tasks) and ``xintu worker`` (the processes that run them)."""
from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from pathlib import Path

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options

_SANDBOX_HELP = "Use the built-in DashScope fake (default: config SANDBOX, never in production)."


def _edit_config(config, sandbox):
    """The config for talking to DashScope; in sandbox mode a fake started in this process, since
    the worker (not the web process) is the only caller of the edit endpoints."""
    config = dict(config)
    if sandbox is None:
        sandbox = bool(config.get("SANDBOX")) and config.get("ENV") != "production"
    if sandbox:
        from xintu.sandbox.dashscope_edit import start_for_worker

        fake, overrides = start_for_worker(config)
        config.update(overrides)
        click.echo(f"sandbox DashScope image edit on {fake.base_url}", err=True)
    return config


@click.group()
def edit():
    """Image edit tasks on DashScope (qwen-image-2.0 by default).

    \b
    Examples:
      xintu edit run photo.jpg --prompt 把背景换成海边 -o out.png
      xintu worker                     # run queued tasks (as many processes/hosts as needed)
      xintu edit sweep                 # cron: refund tasks whose worker died
      xintu edit expire-cache          # cron: drop cache entries past EDIT_CACHE_TTL
    """


@edit.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompt", required=True, help="The instruction, e.g. 把背景换成海边.")
@click.option("--model", default=None, help="Upstream model (default: config EDIT_MODEL, qwen-image-2.0).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Save the result here.")
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for upstream.")
@click.option("--sandbox/--no-sandbox", default=None, help=_SANDBOX_HELP)
def run(image, prompt, model, output, timeout, sandbox):
    """Edit one IMAGE directly (operators: no task row, no credits); prints the result URL."""
    from xintu.config import load_config
    from xintu.edit.images import check_prompt, prepare_image
    from xintu.edit.service import DEFAULT_MODEL
    from xintu.edit.upstream import EditModelClient, TransientUpstreamError, UpstreamStopped
    from xintu.upstreams import check_model

    config = _edit_config(load_config(), sandbox)
    model = model or config.get("EDIT_MODEL") or DEFAULT_MODEL
    level, message = check_model(model, "edit", config.get("DASHSCOPE_EXTRA_MODELS"))
    if level == "fail":
        raise click.ClickException(message)
    prepared = prepare_image(image.read_bytes())
    client = EditModelClient.from_config(config, model)
    spinner, start = itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), time.monotonic()
    outcome = None
    while time.monotonic() - start < timeout:
        try:
            if outcome is None:
                outcome = client.submit(prepared.data, prepared.mime, check_prompt(prompt))
            elif outcome.state == "pending":
                outcome = client.poll(outcome.upstream_id)
        except TransientUpstreamError as exc:
            click.echo(f"\rupstream busy ({exc}), retrying", err=True)
        except UpstreamStopped as exc:
            raise click.ClickException(f"DashScope stopped the edit: {exc} (see `xintu doctor`)") from None
        if outcome is not None and outcome.state != "pending":
            break
        if sys.stderr.isatty():
            click.echo(f"\r{next(spinner)} editing… {time.monotonic() - start:4.0f} s", err=True, nl=False)
        time.sleep(1)
    if sys.stderr.isatty():
        click.echo("\r" + " " * 30 + "\r", err=True, nl=False)
    if outcome is None or outcome.state == "pending":
        raise click.ClickException(f"no result after {timeout} s")
    if outcome.state == "failed":
        raise click.ClickException(f"upstream refused the edit: {outcome.error}")
    if output:
        from xintu.edit.results import BadResult, ResultPolicy, fetch_result

        try:  # the worker's rules: https to EDIT_RESULT_HOSTS, no redirects, bounded size and time
            data, _ = fetch_result(outcome.url, ResultPolicy.from_config(config))
        except BadResult as exc:
            raise click.ClickException(f"result not saved ({exc.code}): {exc.detail}") from exc
        output.write_bytes(data)
        click.echo(f"saved {output}", err=True)
    click.echo(outcome.url)


@edit.command()
@click.option("--cache/--no-cache", "expire_cache", default=True, show_default=True,
              help="Also drop expired cache entries (the job does that apart: `edit expire-cache`).")
@output_options
@with_app
def sweep(expire_cache, fmt):
    """Settle tasks past their deadline whose worker is gone, refunding them whatever went wrong. Cron."""
    from flask import current_app

    from xintu.edit.worker import EditWorker

    emit(EditWorker(current_app.config).sweep(expire_cache=expire_cache), fmt)


@edit.command(name="expire-cache")
@output_options
@with_app
def expire_cache_(fmt):
    """Drop cache entries older than EDIT_CACHE_TTL (their stored results stay with the tasks). Cron-able."""
    from xintu.edit.worker import EditWorker

    emit({"cache_expired": EditWorker.expire_cache()}, fmt)


@edit.command()
@click.argument("task_id")
@output_options
@with_app
def show(task_id, fmt):
    """One task with its images and credits."""
    from xintu.edit.service import describe
    from xintu.errors import NotFound
    from xintu.models import EditTask

    task = EditTask.get_or_none(EditTask.task_id == task_id)
    if task is None:
        raise NotFound("没有这个编辑任务", code="edit_task_not_found")
    emit(describe(task) if fmt == "json" else {**describe(task), "images": len(task.images)}, fmt)


@edit.command(name="list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "partial", "failed"]))
@click.option("--limit", default=20, show_default=True)
@output_options
@with_app
def list_tasks(status, limit, fmt):
    """Recent tasks, newest first."""
    from xintu.models import EditTask

    query = EditTask.select().order_by(EditTask.id.desc()).limit(limit)
    if status:
        query = query.where(EditTask.status == status)
    emit([{"task_id": t.task_id, "user_id": t.user_id, "status": t.status, "images": t.n_images,
           "charged": t.credits_charged, "refunded": t.credits_refunded, "created_at": t.created_at,
           "claimed_by": t.claimed_by} for t in query], fmt)


@edit.command()
@click.option("--port", default=0, show_default=True, help="0 = any free port.")
@click.option("--latency", default=2.0, show_default=True, help="Seconds until an edit completes.")
@click.option("--fail-rate", default=0.0, show_default=True, help="Share of edits that fail upstream.")
def sandbox(port, latency, fail_rate):
    """Run the fake DashScope image-edit service in the foreground (development)."""
    import secrets

    from xintu.sandbox.dashscope_edit import DashScopeEditFake

    fake = DashScopeEditFake("sk-sandbox-" + secrets.token_hex(8), latency=latency, fail_rate=fail_rate)
    fake.start(port=port)
    click.echo(f"XINTU_EDIT_DASHSCOPE_BASE_URL={fake.api_base}\nXINTU_EDIT_DASHSCOPE_API_KEY={fake.api_key}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


@click.command()
@click.option("--once", is_flag=True, help="Exit when nothing is claimable (instead of waiting for work).")
@click.option("--idle-sleep", default=1.0, show_default=True, help="Seconds between looks at an empty queue.")
@click.option("--id", "worker_id", default=None, help="Worker name in claimed_by (default host:pid:random).")
@click.option("--sandbox/--no-sandbox", default=None, help=_SANDBOX_HELP)
@with_app
def worker(once, idle_sleep, worker_id, sandbox):
    """Run image-edit tasks from the queue until stopped (SIGTERM finishes the current step first)."""
    from flask import current_app

    from xintu.edit.worker import EditWorker

    config = _edit_config(current_app.config, sandbox)
    runner, stop = EditWorker(config, worker_id=worker_id), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"worker {runner.id} started", err=True)
    steps = runner.run(stop, idle_sleep=idle_sleep, until_idle=once)
    click.echo(f"worker {runner.id} stopped after {steps} steps", err=True)
