"""Self-contained, offline HTML for circuitsvis components (its local JS bundle, inlined once).

circuitsvis's `str()` output loads its JavaScript from a CDN, which fails offline; its own local
rendering inlines the 1.3 MB bundle once per component. Here a page inlines it once in total.
"""

import html
from importlib.resources import files
from typing import Any
from uuid import uuid4

from circuitsvis.utils.convert_props import convert_props


def circuitsvis_bundle() -> str:
    """The JavaScript bundle that ships inside the circuitsvis package."""
    source = files("circuitsvis").joinpath("dist", "cdn", "iife.js").read_text(encoding="utf-8")
    return source.replace("</script>", "")


Component = tuple[str, str, dict[str, Any]]  # (heading, circuitsvis element name, props)


def circuitsvis_parts(components: list[Component]) -> tuple[str, str]:
    """HTML sections for the components, and one script that renders them all (bundle inlined)."""
    sections, calls = [], []
    for heading, element, props in components:
        node = f"cv-{uuid4().hex[:12]}"
        sections.append(f'<h3>{html.escape(heading)}</h3>\n<div id="{node}"></div>')
        calls.append(
            f'CircuitsVis.render("{node}", CircuitsVis.{element}, {convert_props(props)});'
        )
    script = f"<script>\n{circuitsvis_bundle()}\n{chr(10).join(calls)}\n</script>"
    return "\n".join(sections), script


def page(title: str, body: str, script: str = "", style: str = "") -> str:
    """A complete, self-contained HTML document."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
            f"<style>body {{ font-family: sans-serif; margin: 2em; }} {style}</style></head>",
            f"<body>\n<h1>{html.escape(title)}</h1>",
            body,
            script,
            "</body></html>",
        ]
    )


def circuitsvis_page(components: list[Component], title: str = "") -> str:
    """A full HTML page rendering circuitsvis components."""
    sections, script = circuitsvis_parts(components)
    return page(title, sections, script)
