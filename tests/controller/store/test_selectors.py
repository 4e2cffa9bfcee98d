"""Label checks and the label-selector parser, and the SQL evaluation of selectors
agreeing with the Python one on SQLite and MariaDB."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefleet.controller.store import DeviceFilter, Store
from edgefleet.controller.store.selectors import (
    InvalidLabel,
    InvalidSelector,
    Requirement,
    check_labels,
    parse_selector,
)

LABELS = {"site": "chengdu", "tier": "edge", "example.com/role": "gate"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("site=chengdu", True),
        ("site==chengdu", True),
        ("site = chengdu", True),
        ("site=beijing", False),
        ("site!=beijing", True),
        ("missing!=x", True),
        ("tier in (edge,core)", True),
        ("tier in (core)", False),
        ("tier notin (core, cloud)", True),
        ("missing notin (a)", True),
        ("tier notin (edge)", False),
        ("site", True),
        ("missing", False),
        ("!missing", True),
        ("!site", False),
        ("example.com/role=gate", True),
        ("site=chengdu,tier in (edge,core),!retired", True),
        ("site=chengdu,retired", False),
        ("site=", False),
        ("site in ()", False),
    ],
)
def test_each_operator_selects_as_kubernetes_does(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


def test_the_canonical_text_is_compact_and_sorted_within_sets() -> None:
    selector = parse_selector(" site == chengdu , tier  notin ( core,edge , core ) , ! gone ")
    assert str(selector) == "site=chengdu,tier notin (core,edge),!gone"
    assert selector.requirements[1] == Requirement("tier", "notin", ("core", "edge"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("site=chengdu,", "at the end: expected a requirement after ','"),
        ("site==", None),
        ("site=a=b", "at character 7: expected ',' between requirements, not '='"),
        ("tier in edge", "at character 9: expected '('"),
        ("tier in (edge", "expected ')' to close the set"),
        ("tier in (a b)", "expected ',' or ')' in the set, not 'b'"),
        ("count>3", "operator '>' is not supported"),
        ("!site=x", "'!site' takes no operator or value"),
        ("Bad Key=x", "expected an operator (=, ==, !=, in, notin) after 'Bad'"),
        ("-site=x", "invalid label key '-site'"),
        ("UPPER.example/x=1", "invalid label key 'UPPER.example/x': the prefix must be a DNS"),
        ("site=" + "v" * 64, "invalid label value"),
        ("=x", "at character 1: expected a label key, not '='"),
        (",", "at character 1: expected a label key, not ','"),
        ("site=(x)", "expected a label value after '=', not '('"),
    ],
)
def test_invalid_selectors_say_where_and_why(text: str, problem: str | None) -> None:
    if problem is None:  # "site==" is a valid selector of the empty value
        assert str(parse_selector(text)) == "site="
        return
    with pytest.raises(InvalidSelector) as raised:
        parse_selector(text)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"Bad Key": "x"}, "label key 'Bad Key'"),
        ({"a/": "x"}, "the name must not be empty"),
        ({"/a": "x"}, "the prefix before '/' must not be empty"),
        ({"x" * 64: "v"}, "at most 63 characters"),
        ({"site": "-edge"}, "label 'site': value '-edge'"),
        ({"site": "v" * 64}, "at most 63"),
        ({f"k{i}": "v" for i in range(65)}, "at most 64 labels"),
    ],
)
def test_bad_labels_are_named(labels: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidLabel) as raised:
        check_labels(labels)
    assert problem in str(raised.value)


def test_good_labels_pass() -> None:
    labels = {"site": "", "app.kubernetes.io/name": "Gate_cam-1.2", "a" * 63: "b" * 63}
    assert check_labels(labels) == labels


KEYS = ["site", "tier", "example.com/role", "retired"]
VALUES = ["", "a", "b", "edge"]
keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
value_sets = st.lists(values, min_size=1, max_size=3).map(lambda v: "(" + ",".join(v) + ")")
requirements = st.one_of(
    st.builds(lambda k, op, v: f"{k}{op}{v}", keys, st.sampled_from(["=", "==", "!="]), values),
    st.builds(lambda k, op, v: f"{k} {op} {v}", keys, st.sampled_from(["in", "notin"]), value_sets),
    keys,
    keys.map(lambda k: f"!{k}"),
)
selectors = st.lists(requirements, max_size=4).map(",".join)


@given(text=selectors)
def test_the_canonical_text_parses_to_the_same_selector(text: str) -> None:
    selector = parse_selector(text)
    assert parse_selector(str(selector)) == selector


@given(text=st.text(alphabet="ab=!,() inotx/.-", max_size=30))
def test_any_text_parses_or_is_refused_with_a_reason(text: str) -> None:
    try:
        parse_selector(text)
    except InvalidSelector as refused:
        assert str(refused).startswith(("at character", "at the end"))


def fleet_labels() -> list[dict[str, str]]:
    """Forty devices with labels drawn from the same small alphabet the selectors
    use, so that every operator meets present, missing and differing labels."""
    chance = random.Random(20261129)
    return [
        {key: chance.choice(VALUES) for key in KEYS if chance.random() < 0.6} for _ in range(40)
    ]


async def fleet(store: Store) -> dict[int, dict[str, str]]:
    labelled = {1000 + i: labels for i, labels in enumerate(fleet_labels())}
    if (await store.devices.list(DeviceFilter(), 1, 1))[1] == 0:
        for device_id, labels in labelled.items():
            await store.devices.create(
                {"device_id": device_id, "name": f"d{device_id}", "type": "camera",
                 "hardware_sn": f"SN{device_id}", "hardware_model": "M", "secret": "x" * 60,
                 "labels": labels}
            )  # fmt: skip
    return labelled


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=selectors)
async def test_sql_selects_exactly_the_devices_python_matches(store: Store, text: str) -> None:
    labelled = await fleet(store)
    selector = parse_selector(text)
    expected = sorted(d for d, labels in labelled.items() if selector.matches(labels))
    rows, total = await store.devices.list(DeviceFilter(selector=selector), 1, 500)
    assert [row["device_id"] for row in rows] == expected
    assert total == len(expected)
