"""Property tests of `parse_config`: whatever the YAML held, a `Config` or a `ConfigError` whose
every problem names a key (`key: why`), never another exception; `${VAR}` substitution."""

from __future__ import annotations

import copy
import datetime
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.config import Config, load_config_file, parse_config
from bot.errors import ConfigError

fuzz = settings(max_examples=300, deadline=None)

BASE: dict[str, Any] = {
    "environments": {
        "test": {
            "redis_url": "redis://:pw@127.0.0.1:6379/0",
            "prefix": "bull",
            "queues": ["sla", "other"],
            "channel": "#ops",
            "protected": True,
            "drain": {"stall_s": 60, "timeout_s": 300, "poll_interval_s": 1},
            "flags": {"producer_key": "{prefix}:flags:WORKER_ACCEPT_JOBS"},
            "workers": {
                "w": {
                    "manager": "pm2",
                    "app": "worker",
                    "pm2_home": "/home/deploy/.pm2",
                    "pm2_bin": "pm2",
                    "queues": ["sla"],
                    "env": {"NODE_ENV": "production"},
                    "deploy": {
                        "strategy": "releases",
                        "repo": "git@example.internal:team/worker.git",
                        "deploy_path": "/srv/worker",
                        "default_ref": "main",
                        "build_timeout_s": 600,
                    },
                    "build": [["pnpm", "install", "--frozen-lockfile"], ["pnpm", "build"]],
                    "ready_pattern": "worker:ready",
                    "ready_timeout_s": 60,
                    "quiesce": "pause",
                    "active_wait_s": 60,
                    "completing_wait_s": 20,
                    "canary": {"queue": "sla", "name": "c", "data": {"x": 1}, "timeout_s": 30},
                }
            },
        },
        "staging": {"redis_url": "redis://127.0.0.1:6379/1", "queues": ["sla"]},
    },
    "roles": {"operator": {"users": ["U1"], "groups": ["S1"]}, "approver": {"groups": ["S2"]}},
    "permissions": {
        "operator": {"test": ["status", "drain"], "staging": ["*"]},
        "approver": {"*": ["*"]},
    },
    "approvals": {"deploy": {"test": 1}, "rollback": {"*": 1}},
}


def parse(raw: Any, environ: dict[str, str] | None = None) -> Config | ConfigError:
    """The Config or its ConfigError; any other exception propagates (and fails the test)."""
    try:
        return parse_config(raw, environ=environ or {}, source="fuzz")
    except ConfigError as exc:
        return exc


def keys_of(error: ConfigError) -> list[str]:
    """The key each problem names (`key: why`), with `[i]` list indexes written `.i`."""
    assert isinstance(error.problems, list) and error.problems, "a ConfigError without problems"
    keys = []
    for problem in error.problems:
        assert isinstance(problem, str)
        key, sep, why = problem.partition(": ")
        assert sep and key and why.strip(), f"not `key: why`: {problem!r}"
        keys.append(re.sub(r"\[(\d+)\]", r".\1", key))
    assert str(error).startswith("fuzz is invalid:")
    return keys


def test_the_base_configuration_is_valid() -> None:
    assert isinstance(parse(copy.deepcopy(BASE)), Config)


# ---- random documents -----------------------------------------------------------------------

# What yaml.safe_load can produce. Keys are never "" here: see test_an_empty_key_is_named.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # nan and inf included (`.nan`, `.inf`)
    st.text(max_size=20),
    st.sampled_from(["${X}", "${X:-d}", "${1}", "$X", "{prefix}", "*", "sla", "pm2", "releases"]),
    st.binary(max_size=8),  # !!binary
    st.dates(),
    st.datetimes(),
)
keys = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(list(BASE) + list(BASE["environments"]["test"]) + ["w", "test", "*"]),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=30,
)
# YAML-ish text, without `!` (tags) and with `-` only as a list marker (no dates): see
# test_any_yaml_text_is_a_config_error.
plain_yaml = st.lists(
    st.one_of(
        st.sampled_from(list(":{}[],'\"&*?|>#%@` \n\t") + ["  ", "\n  ", ": ", "\n- "]),
        st.text(st.characters(exclude_characters="!-", exclude_categories=("Cs",)), max_size=4),
    ),
    max_size=20,
).map("".join)


@fuzz
@given(raw=st.one_of(documents, st.dictionaries(keys, documents, max_size=5)))
def test_any_document_is_a_config_or_names_its_problems(raw: Any) -> None:
    result = parse(raw)
    if isinstance(result, ConfigError):
        keys_of(result)


@fuzz
@given(
    environments=st.dictionaries(
        st.one_of(keys, st.just("test")),
        st.one_of(
            documents,
            st.fixed_dictionaries(
                {"redis_url": st.text(max_size=10), "queues": st.lists(st.text(max_size=5))},
                optional={
                    "prefix": st.text(max_size=6),
                    "workers": st.dictionaries(keys, documents, max_size=2),
                    "drain": st.dictionaries(
                        st.sampled_from(["stall_s", "timeout_s", "poll_interval_s", "x"]), scalars
                    ),
                },
            ),
        ),
        max_size=3,
    ),
    extra=st.dictionaries(st.sampled_from(["roles", "permissions", "approvals"]), documents),
)
def test_near_miss_environments_are_a_config_or_name_their_problems(environments, extra) -> None:
    """Deeper than random documents get: the right top-level shape, wrong insides."""
    result = parse({"environments": environments, **extra})
    if isinstance(result, ConfigError):
        keys_of(result)


# ---- YAML files --------------------------------------------------------------------------

yaml_texts = st.one_of(
    documents.map(yaml.safe_dump),
    st.dictionaries(keys, documents, max_size=4).map(yaml.safe_dump),
    st.just(yaml.safe_dump(BASE)).flatmap(
        lambda text: st.tuples(st.integers(0, len(text)), st.integers(0, 40), plain_yaml).map(
            lambda cut: text[: cut[0]] + cut[2] + text[cut[0] + cut[1] :]
        )
    ),
    plain_yaml,
)


@fuzz
@given(text=yaml_texts)
def test_any_yaml_file_is_a_config_or_names_its_problems(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chatops.yml"
        path.write_text(text)
        try:
            load_config_file(path, environ={})
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


# ---- the valid base with one key mutated ----------------------------------------------------


def paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at] if at else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*at, i))
    return found


BASE_PATHS = paths(BASE)


def dotted(path: tuple[Any, ...]) -> str:
    # A key as the document wrote it: a YAML boolean key is named False/True, not 0/1.
    return ".".join(str(part) for part in path)


def related(key: str, path: str) -> bool:
    """A problem about `path` is named at it, above it (a validator of the enclosing model),
    below it (a field of what is there now), or at the top (references between sections)."""
    return (
        key == "(top level)"
        or key == path
        or path.startswith(key + ".")
        or key.startswith(path + ".")
        or path == ""
    )


@st.composite
def mutations(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """BASE with one key changed; the dotted paths a problem must be about."""
    raw = copy.deepcopy(BASE)
    path = draw(st.sampled_from(BASE_PATHS))
    *parents, last = path
    parent: Any = raw
    for part in parents:
        parent = parent[part]
    old = parent[last]
    how = draw(st.sampled_from(["replace", "delete", "rename", "add", "wrap", "stringify"]))
    touched = [dotted(path)]
    if how == "replace":
        parent[last] = draw(documents)
    elif how == "delete":
        del parent[last]
    elif how == "rename" and isinstance(parent, dict):
        new_key = draw(keys)
        del parent[last]
        parent[new_key] = old
        touched.append(dotted((*parents, new_key)))
    elif how == "add" and isinstance(old, dict):
        new_key = draw(keys)
        old[new_key] = draw(documents)
        touched.append(dotted((*path, new_key)))
    elif how == "wrap":
        parent[last] = [old]
    else:
        parent[last] = str(old)
    return raw, touched


@settings(max_examples=500, deadline=None)
@given(mutation=mutations())
def test_one_mutated_key_gives_a_config_or_a_problem_about_that_key(mutation) -> None:
    raw, touched = mutation
    result = parse(raw)
    if isinstance(result, ConfigError):
        named = keys_of(result)
        assert any(related(key, path) for key in named for path in touched), (
            f"mutated {touched}; problems: {result.problems}"
        )


# ---- ${VAR} interpolation -------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
plain = st.text(st.characters(exclude_characters="$", exclude_categories=("Cs",)), max_size=10)
defaults = st.text(st.characters(exclude_characters="}", exclude_categories=("Cs",)), max_size=10)
environ_values = st.one_of(st.text(max_size=10), st.sampled_from(["", "${OTHER}", "$X", "}"]))


@fuzz
@given(
    name=names,
    default=st.none() | defaults,
    before=plain,
    after=plain,
    environ=st.dictionaries(names, environ_values, max_size=4),
    value=st.none() | environ_values,
)
def test_interpolation_substitutes_once_or_names_the_missing_variable(
    name, default, before, after, environ, value
) -> None:
    if value is None:
        environ.pop(name, None)
    else:
        environ[name] = value
    template = before + "${" + name + ("" if default is None else ":-" + default) + "}" + after
    raw = copy.deepcopy(BASE)
    raw["environments"]["test"]["redis_url"] = template
    result = parse(raw, environ)
    if environ.get(name):
        expected: str | None = before + environ[name] + after
    elif default is not None:
        expected = before + default + after
    else:
        expected = None
    if expected is None:
        assert isinstance(result, ConfigError)
        assert result.problems == [
            f"environments.test.redis_url: environment variable {name} is not set"
        ]
    else:
        # Substituted once: a value holding `${OTHER}` stays as it is.
        assert isinstance(result, Config), result
        assert result.environments["test"].redis_url == expected


@fuzz
@given(
    path=st.sampled_from([p for p in BASE_PATHS if isinstance(p[-1], (str, int))]),
    template=st.lists(
        st.one_of(
            plain,
            st.builds(lambda n: "${" + n + "}", st.text(max_size=6)),
            st.builds(lambda n, d: "${" + n + ":-" + d + "}", st.text(max_size=6), defaults),
            st.sampled_from(["${", "}", "$", ":-", "${A", "${A:-", "$${A}", "${A}}"]),
        ),
        max_size=5,
    ).map("".join),
    environ=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4),
)
def test_interpolation_anywhere_never_raises_anything_but_config_error(
    path, template, environ
) -> None:
    raw = copy.deepcopy(BASE)
    *parents, last = path
    node: Any = raw
    for part in parents:
        node = node[part]
    node[last] = template
    result = parse(raw, environ)
    if isinstance(result, ConfigError):
        keys_of(result)


# ---- bugs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["queue", "environment"])
def test_names_with_a_final_newline_are_refused(where: str) -> None:
    raw = copy.deepcopy(BASE)
    env = raw["environments"]["staging"]
    if where == "queue":
        env["queues"] = ["sla\n"]
    else:
        raw["environments"]["staging\n"] = raw["environments"].pop("staging")
        del raw["permissions"]["operator"]["staging"]
    assert isinstance(parse(raw), ConfigError)


def test_a_negative_approval_count_is_refused() -> None:
    raw = copy.deepcopy(BASE)
    raw["approvals"] = {"resume": {"test": -1}}
    assert isinstance(parse(raw), ConfigError)


@example(value=math.inf)
@example(value=1e14)
@given(value=st.floats(min_value=1e14))
def test_an_unusable_drain_timeout_is_refused(value: float) -> None:
    raw = copy.deepcopy(BASE)
    raw["environments"]["test"]["drain"]["timeout_s"] = value
    result = parse(raw)
    if isinstance(result, Config):
        timeout = result.environments["test"].drain.timeout_s
        _ = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=timeout)


@pytest.mark.parametrize("shape", ["self-referential", "deep"])
def test_a_recursive_document_is_a_config_error(shape: str) -> None:
    node: list[Any] = []
    if shape == "self-referential":
        node.append(node)
    else:
        inner = node
        for _ in range(5000):
            inner.append([])
            inner = inner[0]
    assert isinstance(parse({"environments": node}), ConfigError)


def test_a_boolean_key_is_named() -> None:
    raw = yaml.safe_load("environments:\n  no: {redis_url: 'redis://x', queues: [sla]}\n")
    result = parse(raw)
    assert isinstance(result, ConfigError)
    assert not any(key.startswith("environments.0") for key in keys_of(result)), result.problems


@pytest.mark.parametrize(
    "text",
    ["a: 2020-13-01", "a: !!int x", "a: !!timestamp x", "a: " + "[" * 5000 + "]" * 5000],
    ids=["date", "int-tag", "timestamp-tag", "deep"],
)
def test_any_yaml_text_is_a_config_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "chatops.yml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config_file(path, environ={})


def test_an_empty_key_is_named() -> None:
    result = parse({"": "${X}"})
    assert isinstance(result, ConfigError)
    keys_of(result)
