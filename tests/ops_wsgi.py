"""A tiny WSGI app standing in for xintu where a test checks the web servers, not the app."""

import json


def app(environ, start_response):
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps({"path": environ["PATH_INFO"], "query": environ.get("QUERY_STRING", ""),
                       "method": environ["REQUEST_METHOD"], "remote_addr": environ.get("REMOTE_ADDR"),
                       "headers": headers, "padding": "x" * 2048}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
