"""Where the files that ship inside the package live: conf templates, site sources, pages, models.

Everything is package data of ``xintu`` (see ``[options.package_data]`` in setup.cfg), found through
``importlib.resources`` so that an installed wheel and a checkout behave the same. The wheel is installed
unzipped (``zip_safe = False``), so each location is a real folder that Jinja2 and ``send_from_directory``
can read.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(*parts: str) -> Path:
    return Path(str(resources.files("xintu").joinpath(*parts)))


CONF_DIR = path("conf")          # Jinja2 templates of the server configs, and deploy.example.toml
SITES_DIR = path("sites")        # static sites, the H5 member page, the 管理后台 SPA
