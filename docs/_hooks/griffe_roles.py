"""Griffe extension: the reST roles of the docstrings (``:class:`Embedder```, ``:func:`~a.b```) read as code.

The docstrings are written for Python readers (reST roles, double-backtick literals); the API pages render
them as Markdown, where a role would show its colons. Loaded by mkdocstrings (``extensions`` in mkdocs.yml).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|term):`(?P<tilde>~?)(?P<target>[^`]+)`")


def plain(text: str) -> str:
    """``:class:`a.B``` -> ```a.B```; ``:func:`~a.b``` -> ```b``` (the tilde shows the last part only)."""
    return ROLE.sub(lambda m: f"`{m['target'].rsplit('.', 1)[-1] if m['tilde'] else m['target']}`", text)


class ReSTRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
