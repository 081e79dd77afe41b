"""Where the web package's templates and static files are."""

from __future__ import annotations

from importlib import resources

WEB_ROOT = resources.files("rhizome.web")
TEMPLATES = WEB_ROOT / "templates"
STATIC = WEB_ROOT / "static"
