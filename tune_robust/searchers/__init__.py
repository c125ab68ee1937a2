"""Search methods: how a grid sweep chooses which of its configs run (``--search NAME``), one file per
family. This package is tune_robust's ``searches`` plugin; a user's plugin registers its own with
``@register_search("name")`` on a :class:`SearchMethod` subclass.

Example:
    >>> from tune_robust.searchers import SEARCHES
    >>> SEARCHES.get("tpe")().num_samples(125, None)
    32
"""

from tune_robust.searchers._base import SEARCHES, SearchInputs, SearchMethod, register_search

__all__ = ["SEARCHES", "SearchInputs", "SearchMethod", "register_search"]
