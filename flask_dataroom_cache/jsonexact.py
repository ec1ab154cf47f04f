"""Which values JSON gives back identical: JSON's own types, by their exact class.

``json.dumps`` writes an instance of a subclass of ``str``, ``int``, ``float``, ``dict``,
``list`` or ``tuple`` as its parent (an ``IntEnum`` member as a number, a ``str``-mixin
enum or ``markupsafe.Markup`` as a string, an ``OrderedDict`` as an object, a namedtuple
as an array), and ``json.loads`` gives the parent back: a silent change of type. The
codec (``serialization.py``) stores such a value only through its class's registration
(``customtypes.py``) and refuses it otherwise; this module tells them apart: after
``json.dumps`` accepted a value (so it holds no cycle and only JSON types or their
subclasses), :func:`exact_json` says whether every part is of an exact JSON type, keys
included; :func:`key_of` checks one dict key on the codec's marked path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JSON_TYPES", "SCALARS", "exact_json", "key_of", "qualname"]

#: Types JSON holds itself (exactly these: an instance of a subclass is refused unless
#: its class is registered, it would come back as its parent).
JSON_TYPES: tuple[type, ...] = (str, int, float, bool, dict, list, tuple, type(None))
#: The exact types of JSON scalars, and of the dict keys JSON stores (as strings).
SCALARS = frozenset({str, int, float, bool, type(None)})
_EXACT = frozenset(JSON_TYPES)


def qualname(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def key_of(key: Any) -> Any:
    """A dict key as stored: JSON's own key types (non-strings come back as strings, the
    documented caveat); a subclass of one (a ``StrEnum`` member) is refused."""
    if type(key) in SCALARS:
        return key
    raise TypeError(
        f"cannot cache a dict key of type {qualname(type(key))}: keys are stored as JSON "
        "strings and would come back as plain str; use str, int, float, bool or None "
        "keys (an enum member: its .value)"
    )


def exact_json(value: Any) -> bool:
    """Whether ``value`` (which ``json.dumps`` accepted: no cycle, only JSON types and
    their subclasses) holds JSON's exact types only, keys included. Lists are checked a
    whole ``set(map(type, ...))`` at a time (C loops): a long list of numbers or of rows
    costs a fraction of its ``json.dumps``."""
    scalars = SCALARS
    if type(value) in scalars:
        return True
    stack = [value]
    while stack:
        obj = stack.pop()
        kind = type(obj)
        if kind is dict:
            for key, item in obj.items():
                if type(key) not in scalars:
                    return False
                t = type(item)
                if t not in scalars:
                    if t is dict or t is list or t is tuple:
                        stack.append(item)
                    else:
                        return False
        elif kind is list or kind is tuple:
            kinds = set(map(type, obj))
            if kinds <= scalars:
                continue
            if not kinds <= _EXACT:
                return False
            stack.extend([item for item in obj if type(item) not in scalars])
        else:
            return False
    return True
