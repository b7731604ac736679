"""X-Ray test fixtures; the helpers live in ``xray_support`` so tests import them by a unique name
(a plain ``from conftest import`` picks whichever conftest module was imported first)."""

from xray_support import *  # noqa: F403  (registers the fixtures with pytest)
