"""Fake upstream servers (real wire protocols) for tests and the offline embedded mode of `xintu serve`.

``start_embedded(config)`` starts the fakes an area registered in ``EMBEDDED`` and returns the config
overrides that point the app at them (each module's own ``start_embedded`` decides whether it is wanted).
"""
from __future__ import annotations

import importlib

EMBEDDED = [
    "xintu.sandbox.dashscope_vl",   # Qwen-VL classification: only with SANDBOX_LLM, else local-only
    "xintu.sandbox.wechat",         # WeChat official account + WeChat Pay v3, with the click-through demo
]


def start_embedded(config: dict) -> dict:
    overrides: dict = {}
    for name in EMBEDDED:
        overrides.update(importlib.import_module(name).start_embedded({**config, **overrides}))
    return overrides
