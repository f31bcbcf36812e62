"""The search language's answers to what the control plane asks of a saved query.

Stage: beside the process wiring. What it promises: :class:`QueryChecks` is the
:class:`~astralog.controlplane.saved_searches.QueryGrammar` the control plane is handed: the
control plane stores queries, time bounds and field names but sits below the search language
(:mod:`astralog.query`), so the wiring passes the language's checks down instead of the control
plane importing up. A query refused here is refused when it is saved, never when it runs.
"""

from __future__ import annotations

from astralog.errors import BadRequest
from astralog.query.language import Exists, parse
from astralog.query.timerange import parse_instant

__all__ = ["QueryChecks"]

_ANY_NOW_NS = 946_684_800 * 10**9  # a bound is checked for its form: any "now" will do


class QueryChecks:
    def check_query(self, text: str) -> None:
        parse(text)

    def is_field(self, name: str) -> bool:
        """Whether ``name`` is one field name as the search box reads one (``_exists_:name``),
        and nothing more: ``a OR b`` parses, but it is not a field."""
        if not 0 < len(name) <= 256 or name.strip() != name:
            return False
        try:
            node = parse(f"_exists_:{name}")
        except BadRequest:
            return False
        return isinstance(node, Exists) and node.field.name == name

    def check_instant(self, text: str, what: str) -> None:
        parse_instant(text, _ANY_NOW_NS, what)
