"""Sphinx directive ``nsgflow-settings``: the settings reference, generated from the workflow's schema.

One section per part of ``config.yaml`` and one table row per key: what it
allows (:func:`nsgflow.settings.describe`), its default and what it does, all
from ``workflow/schemas/config.schema.yaml``, so the page cannot go stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from nsgflow.settings import describe
from nsgflow.workflow import load_schema, workflow_dir


def _cell(text: object) -> str:
    """A Markdown table cell: the text with its pipes escaped."""
    return str(text).replace("|", "\\|")


def _table(properties: dict) -> Iterator[str]:
    """A Markdown table of ``properties``: key, what it allows, default, what it does."""
    yield "| key | allowed | default | what it does |"
    yield "|---|---|---|---|"
    for key, spec in properties.items():
        default = f"`{_cell(json.dumps(spec['default']))}`" if "default" in spec else "(required)"
        yield f"| `{key}` | {_cell(describe(spec))} | {default} | {_cell(spec['description'])} |"


def settings_reference(schema: dict) -> list[str]:
    """The reference as Markdown lines: the top-level keys, then one section per part."""
    top = {key: spec for key, spec in schema["properties"].items() if spec.get("type") != "object"}
    lines = ["## Run", "", *_table(top), ""]
    for section, spec in schema["properties"].items():
        if spec.get("type") == "object":
            lines += [f"## `{section}`", "", *_table(spec["properties"]), ""]
    return lines


class SettingsDirective(SphinxDirective):
    """``nsgflow-settings``: insert the settings reference."""

    def run(self) -> list[nodes.Node]:
        path = workflow_dir() / "workflow" / "schemas" / "config.schema.yaml"
        self.env.note_dependency(str(path))  # rebuilt when the schema changes
        container = nodes.section()
        content = StringList(settings_reference(load_schema(path)), source=str(path))
        nested_parse_with_titles(self.state, content, container)
        return container.children


def setup(app: Sphinx) -> dict:
    """Register the directive."""
    app.add_directive("nsgflow-settings", SettingsDirective)
    return {"parallel_read_safe": True}
