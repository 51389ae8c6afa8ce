# gunicorn settings of the xintu app — rendered by `xintu conf render`; edit the settings, not this.
import multiprocessing
import os
import shutil

bind = "10.0.0.5:8000"
# Counted on the host that starts gunicorn, not on the machine that rendered this file.
workers = multiprocessing.cpu_count() * 2 + 1
worker_class = "gthread"
# Requests spend most of their time waiting on the LLM or the database: threads keep workers busy.
threads = 4
# Recycle workers to bound slow leaks (image libraries); jitter stops them restarting together.
max_requests = 1000
max_requests_jitter = 100
# Above the LLM call timeout (60 s) so a slow upstream ends as our JSON error, not a kill.
timeout = 90
graceful_timeout = 30
# Longer than nginx's upstream keepalive idle time, so nginx closes idle connections first.
keepalive = 75
# Off by default: with preload the app is imported once by the master, and a HUP reload after a deploy
# would keep serving the old code. Turn on only where a USR2 binary upgrade is used instead.
preload_app = False
# No control socket: its default path is shared, so two instances on one host would collide.
control_socket_disable = True
pidfile = "/run/xintu/gunicorn.pid"
accesslog = "/var/log/xintu/gunicorn-access.log"
errorlog = "/var/log/xintu/gunicorn-error.log"
# The path without its query string: WeChat callback URLs carry openid, signature and nonce.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}i)s'
forwarded_allow_ips = "127.0.0.1,::1"
# The URLs WeChat calls follow the web tier's settings (web.wechat_paths): the OAuth redirect and the pay
# notify URL the app sends to WeChat Pay.
raw_env = [
    "PROMETHEUS_MULTIPROC_DIR=/run/xintu/prometheus",
    "XINTU_WECHAT_OAUTH_REDIRECT_URL=https://www.xintu.example.com/wechat/oauth",
    "XINTU_WECHATPAY_NOTIFY_URL=https://www.xintu.example.com/wechat/pay/notify",
]

# The hooks below are written out rather than imported from xintu.metrics: the master must never import
# xintu, or after a HUP reload new workers would inherit the old package (and report the old version).


def on_starting(server):
    # prometheus_client multiprocess mode needs an empty directory at each start.
    path = "/run/xintu/prometheus"
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # The app is loaded: what its imports and setup made (modules, routes, schemas, models) lives as long as
    # the worker. Frozen, it is left out of the collector's full collections, which otherwise walk all of it
    # every time the objects requests leave behind have grown by a quarter.
    import gc

    gc.freeze()
