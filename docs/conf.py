"""Sphinx configuration for the triopipe documentation.

Build with ``nox -s docs`` (``sphinx-build -W -n``): every warning, including
an unresolved cross-reference, fails the build.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import types

import triopipe
import triopipe.testing

project = "triopipe"
author = "the triopipe authors"
copyright = f"%Y, {author}"  # noqa: A001 - the name Sphinx reads
release = importlib.metadata.version("triopipe")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
# No sphinx.ext.intersphinx: the build must work offline, so references to the
# standard library, anyio and trio cannot resolve; nitpick_ignore_regex below
# lists them instead of letting -n fail on them.

templates_path: list[str] = []
# _generated/ holds pieces other pages include (tools/gen_commands.py).
exclude_patterns = ["_build", "_generated"]
default_role = "py:obj"

nitpicky = True
nitpick_ignore_regex = [
    # Other projects' objects (no intersphinx, see above).
    (r"py:.*", r"(anyio|trio|pytest|_pytest|sniffio|opentelemetry)(\..*)?"),
    (r"py:.*", r"(collections\.abc|contextlib|os|pathlib|socket|ssl|subprocess|typing)\..*"),
    (r"py:.*", r"(concurrent\.futures|enum|types)\..*"),
    # OpenTelemetry's providers, named bare in triopipe.otel's signatures.
    (r"py:class", r"(TracerProvider|MeterProvider)"),
    # Type variables and internal aliases in generic signatures.
    (r"py:.*", r"(triopipe\.)?(_\w+\.)*(T|P|Arg|Key)"),
    # The package's internal machinery named in public signatures and bases
    # (the architecture guide describes it).
    (
        r"py:class",
        r"triopipe\._\w+\.(ConnectionGroup|RetryPolicy|BatchBlock|FanOutClient|FanOut)",
    ),
]

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_type_aliases = {"ConfigValue": "triopipe.testing.ConfigValue"}

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"triopipe {release}"


def _adopt_public_names(module: types.ModuleType, private: str | None = None) -> None:
    """Document re-exported objects under their public module, not a private one.

    ``triopipe.ResponseError`` is defined in ``triopipe._exceptions``; setting
    its ``__module__`` (for the docs build only) makes signatures, base
    classes and cross-references name it ``triopipe.ResponseError``.
    """
    names = getattr(module, "__all__", None) or [n for n in vars(module) if n[:1] != "_"]
    for name in names:
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.startswith(
            private or f"{module.__name__}._"
        ):
            obj.__module__ = module.__name__


_adopt_public_names(triopipe)
_adopt_public_names(triopipe.testing)
# The blocking facade's blocks live in a private module of the package.
_adopt_public_names(triopipe.sync, "triopipe._sync_blocks")
