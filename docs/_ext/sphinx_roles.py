"""A griffe extension for the API reference: Sphinx roles become code spans.

grpcpool's docstrings name other objects the Sphinx way (``:class:`Config```,
``:func:`~grpcpool.channel```), which Markdown would show with the role's
colons. The reference renders each as the code span a reader expects
(`Config`, `channel`: a leading ``~`` keeps the last part only), without
editing the docstrings the code and its tools read.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj|const):`(~?)([^`]+)`")


def _span(match: re.Match[str]) -> str:
    shortened, target = match.group(1), match.group(2)
    if shortened:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(griffe.Extension):
    """Rewrites each object's docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_span, obj.docstring.value)
