"""Labels and label selectors, in Kubernetes syntax: checked, parsed, matched.

Theory of operation
-------------------
A device carries labels, a map of short strings, written and checked as
Kubernetes writes them (``check_labels``): a key is an optional DNS-subdomain
prefix and a slash, then a name of 1 to 63 characters; a value is at most 63
characters. A selector picks devices by their labels, in the syntax of
``kubectl get -l`` (``parse_selector``)::

    site=chengdu,tier in (edge,core),!retired

is a comma-separated list of requirements, all of which must hold:

==================  ============================================================
``key=value``       the label is there with this value (``==`` is the same)
``key!=value``      the label is missing, or has another value
``key in (a,b)``    the label is there with one of these values
``key notin (a,b)`` the label is missing, or has none of these values
``key``             the label is there, whatever its value
``!key``            the label is missing
==================  ============================================================

A parsed ``Selector`` is data: ``matches`` evaluates it against one device's labels
in Python (a device whose labels just changed, against every dynamic group), and
``controller.store.labels.selector_condition`` turns the same requirements into
SQL for lists over the whole fleet. The two must agree; a property test checks
that they do. ``str(selector)`` is its canonical text, which is what is stored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

LABEL_NAME_MAX = 63
LABEL_PREFIX_MAX = 253
LABEL_KEY_MAX = LABEL_PREFIX_MAX + 1 + LABEL_NAME_MAX
LABEL_VALUE_MAX = 63
LABELS_MAX = 64
"""Labels per device: enough for any sane scheme, and it bounds a row's cost."""
SELECTOR_MAX = 1024

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPECIAL = "!=(),<>"
_SPACE = " \t\r\n"

# The same rules as regular expressions, for the OpenAPI document and the CRD, so
# that what a schema admits is what the code accepts (and the other way round).
_NAME_RE = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = (
    r"(?![-a-z0-9.]{254,}/)"  # a prefix is at most 253 characters
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _NAME_RE
)
_W = r"[ \t\r\n]*"
_VALUE_RE = rf"({_NAME_RE})?"
_REQUIREMENT_RE = (
    rf"(!{_W}{_KEY_RE}|{_KEY_RE}({_W}(==|=|!=){_W}{_VALUE_RE}"
    rf"|[ \t\r\n]+(in|notin){_W}\({_W}{_VALUE_RE}({_W},{_W}{_VALUE_RE})*{_W}\))?)"
)
_REQUIREMENTS_RE = rf"{_REQUIREMENT_RE}({_W},{_W}{_REQUIREMENT_RE})*"
LABEL_KEY_PATTERN = rf"^{_KEY_RE}$"
LABEL_VALUE_PATTERN = rf"^{_VALUE_RE}$"
SELECTOR_PATTERN = rf"^{_W}({_REQUIREMENTS_RE})?{_W}$"
"""Any selector, the empty one (every device) included."""
NONEMPTY_SELECTOR_PATTERN = rf"^{_W}{_REQUIREMENTS_RE}{_W}$"


class InvalidLabel(ValueError):
    """A label key or value that Kubernetes would refuse; the message names it."""


class InvalidSelector(ValueError):
    """A selector that does not parse; the message says where and why."""


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "the prefix before '/' must not be empty"
        if len(prefix) > LABEL_PREFIX_MAX:
            return f"the prefix must be at most {LABEL_PREFIX_MAX} characters"
        if not _PREFIX.match(prefix):
            return "the prefix must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
    if not name:
        return "the name must not be empty"
    if len(name) > LABEL_NAME_MAX:
        return f"the name must be at most {LABEL_NAME_MAX} characters"
    if not _NAME.match(name):
        return (
            "the name must be letters, digits, '-', '_' or '.', "
            "beginning and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None (the empty value is valid)."""
    if len(value) > LABEL_VALUE_MAX:
        return f"must be at most {LABEL_VALUE_MAX} characters"
    if value and not _NAME.match(value):
        return (
            "must be letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
        )
    return None


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` as a plain dict, or ``InvalidLabel`` naming the first bad one."""
    if len(labels) > LABELS_MAX:
        raise InvalidLabel(f"at most {LABELS_MAX} labels, not {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidLabel(f"label {key!r}: keys and values must be strings")
        problem = label_key_problem(key)
        if problem:
            raise InvalidLabel(f"label key {key!r}: {problem}")
        problem = label_value_problem(value)
        if problem:
            raise InvalidLabel(f"label {key!r}: value {value!r} {problem}")
    return dict(labels)


# --- selectors ---------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    """``=``, ``!=``, ``in``, ``notin``, ``exists`` or ``!``."""
    values: tuple[str, ...] = ()
    """Sorted and distinct; one for ``=`` and ``!=``, none for ``exists`` and ``!``."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and labels[self.key] in self.values
            case _:  # "!=" and "notin": a missing label satisfies them
                return not present or labels[self.key] not in self.values

    def __str__(self) -> str:
        match self.operator:
            case "exists":
                return self.key
            case "!":
                return f"!{self.key}"
            case "=" | "!=":
                return f"{self.key}{self.operator}{self.values[0]}"
            case _:
                return f"{self.key} {self.operator} ({','.join(self.values)})"


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]
    """All must hold; none at all matches every device."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


@dataclass(frozen=True)
class _Token:
    text: str
    at: int
    """1-based character position, for the error messages."""


def _tokens(text: str) -> Iterator[_Token]:
    i = 0
    while i < len(text):
        char = text[i]
        if char in _SPACE:
            i += 1
        elif char in _SPECIAL:
            two = text[i : i + 2]
            if two in ("==", "!="):
                yield _Token(two, i + 1)
                i += 2
            else:
                yield _Token(char, i + 1)
                i += 1
        else:
            start = i
            while i < len(text) and text[i] not in _SPACE and text[i] not in _SPECIAL:
                i += 1
            yield _Token(text[start:i], start + 1)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = list(_tokens(text))
        self.position = 0
        self.end = len(text) + 1

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> _Token | None:
        token = self.peek()
        self.position += token is not None
        return token

    def fail(self, token: _Token | None, problem: str) -> InvalidSelector:
        where = f"at character {token.at}" if token else "at the end"
        return InvalidSelector(f"{where}: {problem}")

    def selector(self) -> Selector:
        requirements = []
        if self.peek() is None:
            return Selector(())
        while True:
            requirements.append(self.requirement())
            token = self.take()
            if token is None:
                break
            if token.text != ",":
                raise self.fail(token, f"expected ',' between requirements, not {token.text!r}")
            if self.peek() is None:
                raise self.fail(None, "expected a requirement after ','")
        return Selector(tuple(requirements))

    def requirement(self) -> Requirement:
        token = self.take()
        if token is not None and token.text == "!":
            key = self.key(self.take())
            following = self.peek()
            if following is not None and following.text != ",":
                raise self.fail(following, f"'!{key}' takes no operator or value")
            return Requirement(key, "!")
        key = self.key(token)
        operator = self.peek()
        if operator is None or operator.text == ",":
            return Requirement(key, "exists")
        self.take()
        if operator.text in ("=", "==", "!="):
            value = self.value(self.peek(), f"after {operator.text!r}")
            return Requirement(key, "!=" if operator.text == "!=" else "=", (value,))
        if operator.text in ("in", "notin"):
            return Requirement(key, operator.text, self.value_set(operator.text))
        if operator.text in ("<", ">"):
            raise self.fail(operator, f"operator {operator.text!r} is not supported")
        raise self.fail(
            operator,
            f"expected an operator (=, ==, !=, in, notin) after {key!r}, not {operator.text!r}",
        )

    def key(self, token: _Token | None) -> str:
        if token is None or token.text in _SPECIAL or token.text in ("==", "!="):
            found = "nothing" if token is None else repr(token.text)
            raise self.fail(token, f"expected a label key, not {found}")
        problem = label_key_problem(token.text)
        if problem:
            raise self.fail(token, f"invalid label key {token.text!r}: {problem}")
        return token.text

    def value(self, token: _Token | None, where: str) -> str:
        """A value, which may be empty (``key=`` selects the empty value)."""
        if token is None or token.text in (",", ")"):
            return ""
        if token.text in _SPECIAL or token.text in ("==", "!="):
            raise self.fail(token, f"expected a label value {where}, not {token.text!r}")
        self.take()
        problem = label_value_problem(token.text)
        if problem:
            raise self.fail(token, f"invalid label value {token.text!r}: {problem}")
        return token.text

    def value_set(self, operator: str) -> tuple[str, ...]:
        """``(a,b)``; as in Kubernetes, ``()`` is the set of the empty value."""
        opening = self.take()
        if opening is None or opening.text != "(":
            raise self.fail(opening, f"expected '(' after {operator!r}")
        values = set()
        while True:
            values.add(self.value(self.peek(), f"in the set of {operator!r}"))
            token = self.take()
            if token is None:
                raise self.fail(None, "expected ')' to close the set of values")
            if token.text == ")":
                break
            if token.text != ",":
                raise self.fail(token, f"expected ',' or ')' in the set, not {token.text!r}")
        return tuple(sorted(values))


@functools.lru_cache(maxsize=1024)
def parse_selector(text: str) -> Selector:
    """The selector ``text`` says, or ``InvalidSelector`` saying where it is wrong.
    Cached: groups' selectors are parsed again on every label change."""
    if len(text) > SELECTOR_MAX:
        raise InvalidSelector(f"at most {SELECTOR_MAX} characters, not {len(text)}")
    return _Parser(text).selector()
