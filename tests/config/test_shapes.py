"""The loader's second step, as properties over generated project files (the richest
shape: project, tasks, policies, remediation, validators):

* a valid file read back gives the same shape, from YAML and from JSON, and the shape
  written out and read again is equal (nothing is lost or invented on the way);
* an unknown key added to any mapping the shapes declare is refused, with the key path
  to it, whatever else the file holds.

Plus the shapes that mirror a list kept elsewhere agree with it (a field per trigger,
per task type; a policy entry's keys are a policy's)."""

from __future__ import annotations

import copy
import json

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli.project_file import ProjectFile
from orchestrator.config import ConfigError, convert
from orchestrator.config.reading import parse_text
from orchestrator.domain.errors import join_key
from orchestrator.domain.tasks import TaskType
from orchestrator.governance.policy import Policy, PolicyPatch
from orchestrator.governance.policy_types import known_providers, known_tags
from orchestrator.governance.remediation import STRATEGIES_FOR, RemediationFile, Trigger
from orchestrator.governance.validators import ValidatorsFile

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
TEXT = st.text(
    st.characters(min_codepoint=32, max_codepoint=0xD7FF, blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30
).filter(lambda s: s.strip())
UNKNOWN = st.from_regex(r"zz[a-z_]{0,6}", fullmatch=True)  # no declared key starts with zz
Where = tuple[tuple[object, ...], str]  # (where in the data, the key path a user reads)


def _subset(items):
    return st.lists(st.sampled_from(sorted(items)), unique=True, max_size=3)


@st.composite
def policy(draw, name: str) -> dict:
    entry: dict = {"name": name}
    for key, items in (
        ("blocked_providers", known_providers()),
        ("requires", known_tags()),
        ("skippable_validators", ["pytest", "ruff", "json"]),
    ):
        if draw(st.booleans()):
            entry[key] = draw(_subset(items))
    if draw(st.booleans()):
        per_call = draw(st.floats(0.001, 10))
        entry["max_cost_per_call_usd"] = per_call
        entry["max_cost_per_task_usd"] = per_call * draw(st.floats(1, 10))
    if draw(st.booleans()):
        entry["enforcement_mode"] = draw(st.sampled_from(["hard", "soft", "monitor"]))
    return entry


@st.composite
def policy_list(draw, at: tuple[object, ...], key: str, places: list[Where]) -> list:
    names = draw(st.lists(NAMES, unique=True, min_size=1, max_size=3))
    places.extend(((*at, i), f"{key}[{i}]") for i in range(len(names)))
    return [draw(policy(n)) for n in names]


@st.composite
def project_file(draw) -> tuple[dict, list[Where]]:
    places: list[Where] = [((), "")]
    data: dict = {"project": draw(TEXT)}
    if draw(st.booleans()):
        data["criteria"] = draw(TEXT)
    for key, number in (
        ("budget_usd", st.floats(0, 1e6)),
        ("time_seconds", st.floats(0.5, 1e6)),
        ("concurrency", st.integers(1, 64)),
    ):
        if draw(st.booleans()):
            data[key] = draw(number)
    if draw(st.booleans()):
        ids = draw(st.lists(NAMES, unique=True, min_size=1, max_size=4))
        tasks = []
        for i, tid in enumerate(ids):
            task: dict = {"id": tid, "prompt": draw(TEXT), "type": draw(st.sampled_from([t.value for t in TaskType]))}
            if i and draw(st.booleans()):
                task["depends_on"] = draw(st.lists(st.sampled_from(ids[:i]), unique=True, min_size=1))
            if draw(st.booleans()):
                task["acceptance_threshold"] = draw(st.floats(0, 1))
            if draw(st.booleans()):
                task["max_iterations"] = draw(st.integers(1, 5))
            tasks.append(task)
            places.append((("tasks", i), f"tasks[{i}]"))
        data["tasks"] = tasks
    if draw(st.booleans()):
        if draw(st.booleans()):
            data["policies"] = draw(policy_list(("policies",), "policies", places))
        else:
            places.append((("policies",), "policies"))
            section: dict = {"policies": draw(policy_list(("policies", "policies"), "policies.policies", places))}
            for ttype in draw(_subset([t.value for t in TaskType])):
                section.setdefault("task_types", {})[ttype] = draw(
                    policy_list(("policies", "task_types", ttype), f"policies.task_types.{ttype}", places)
                )
            data["policies"] = section
    if draw(st.booleans()):
        places.append((("remediation",), "remediation"))
        remediation: dict = {}
        for trigger in draw(_subset([t.value for t in Trigger])):
            allowed = [s.value for s in STRATEGIES_FOR[Trigger(trigger)]]
            remediation[trigger] = draw(
                st.lists(
                    st.one_of(
                        st.sampled_from(allowed),
                        st.builds(lambda s, n: {s: n}, st.sampled_from(allowed), st.integers(1, 4)),
                    ),
                    max_size=3,
                )
            )
        if draw(st.booleans()):
            remediation["min_threshold"] = draw(st.floats(0, 1))
        data["remediation"] = remediation
    if draw(st.booleans()):
        places.append((("validators",), "validators"))
        choices = st.sampled_from(
            ["not_empty", "python_syntax", {"length": {"max_words": 50}}, {"pytest": {"timeout": 30.0}}]
        )
        data["validators"] = {
            t: draw(st.lists(choices, max_size=3)) for t in draw(_subset([t.value for t in TaskType]))
        }
    return data, places


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:  # a value used twice is written twice, not aliased
        return True


def _dump(data: dict, fmt: str) -> str:
    return json.dumps(data) if fmt == "json" else yaml.dump(data, Dumper=_NoAliases, allow_unicode=True, width=10**6)


def _plain(value: object) -> object:
    """Written out as data: UNSET and None keys dropped, tuples as lists."""
    return json.loads(
        json.dumps(msgspec.to_builtins(value)), object_hook=lambda d: {k: v for k, v in d.items() if v is not None}
    )


def _assert_kept(written: object, read: object, where: str = "$") -> None:
    """Every value written is read back as written (read may add the shape's defaults)."""
    if isinstance(written, dict):
        assert isinstance(read, dict), where
        for key, value in written.items():
            assert key in read, f"{where}.{key}"
            _assert_kept(value, read[key], f"{where}.{key}")
    elif isinstance(written, list):
        assert isinstance(read, list) and len(read) == len(written), where
        for index, (a, b) in enumerate(zip(written, read, strict=True)):
            _assert_kept(a, b, f"{where}[{index}]")
    else:
        assert read == written and type(read) in (type(written), float), where


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(project_file(), st.sampled_from(["yaml", "json"]))
def test_a_valid_file_round_trips(generated, fmt):
    data, _ = generated
    shape = convert(parse_text(_dump(data, fmt), fmt), ProjectFile, source="p")
    _assert_kept(json.loads(json.dumps(data)), _plain(shape))  # every value as written
    again = convert(parse_text(_dump(msgspec.to_builtins(shape), "yaml"), "yaml"), ProjectFile)
    assert again == shape


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(project_file(), st.data(), UNKNOWN)
def test_an_unknown_key_anywhere_is_refused_with_its_key_path(generated, pick, unknown_key):
    data, places = generated
    at, key_path = pick.draw(st.sampled_from(places))
    bad = copy.deepcopy(data)
    target = bad
    for step in at:
        target = target[step]
    target[unknown_key] = 1
    with pytest.raises(ConfigError) as info:
        convert(parse_text(_dump(bad, "yaml"), "yaml"), ProjectFile, source="p.yaml")
    error = info.value
    assert error.source == "p.yaml"
    assert error.key == join_key(key_path, unknown_key), (str(error), at)
    assert error.reason.startswith("unknown ") and f"'{unknown_key}' (known: " in error.reason
    assert "\n" not in str(error)


def test_a_near_miss_gets_a_did_you_mean_at_every_depth():
    data = {
        "project": "x",
        "tasks": [{"id": "a", "promt": "p"}],
        "policies": {"task_types": {"summarization": [{"name": "n", "blocked_provider": ["kimi"]}]}},
    }
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.promt: unknown key 'promt' \(did you mean 'prompt'\?"):
        convert(data, ProjectFile)
    del data["tasks"]
    with pytest.raises(
        ConfigError,
        match=r"^policies\.task_types\.summarization\[0\]\.blocked_provider: unknown "
        r"key 'blocked_provider' \(did you mean 'blocked_providers'\?",
    ):
        convert(data, ProjectFile)


def test_the_shapes_agree_with_what_they_mirror():
    assert Policy.__struct_fields__ == PolicyPatch.__struct_fields__
    assert set(RemediationFile.__struct_fields__) >= {t.value for t in Trigger}
    assert set(ValidatorsFile.__struct_fields__) == {t.value for t in TaskType} | {"tasks"}


def test_shapes_are_immutable():
    p = Policy.from_data({"name": "a", "blocked_providers": ["kimi"]})
    with pytest.raises(AttributeError):
        p.name = "b"  # type: ignore[misc]
    assert p.blocked_providers == ("kimi",)
