"""xintu — backend and operations toolkit of 芯图相册 (Xintu Album)."""

__version__ = "0.1.0"


def create_app(config=None):
    """Import-light shortcut for ``xintu.app.create_app`` (used by gunicorn: ``xintu:create_app()``)."""
    # lazy: importing the package (gunicorn's master, the CLI) must not build the whole app's imports
    from xintu.app import create_app as _create_app

    return _create_app(config)
