# Metadata lives in setup.cfg.  This file only maps the cli/ folder to the import name ``xintu_cli``
# (setup.cfg's ``find:`` cannot discover a package whose folder has another name).
from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["xintu", "xintu.*"]) + ["xintu_cli"],
    package_dir={"xintu_cli": "cli"},
)
