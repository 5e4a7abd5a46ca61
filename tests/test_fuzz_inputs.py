"""Fuzzing of the Python inputs (hypothesis): random species names and reaction
strings given to the Model API, random and mutated scenario TOML. Whatever the
input, the only exceptions allowed are ValueError subclasses (our
RedoxfieldError family), never a crash or an unrelated exception type.
Budget: FUZZ_EXAMPLES (default 300) examples per test; CI raises it."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redoxfield as rf
from redoxfield.scenario import parse_scenario

N = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=N, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
_SCENARIOS = sorted((Path(rf.__file__).parent / "scenarios").glob("*.toml"))
_TOKENS = ["H2O2", "Prx", "A", "B", "+", "->", "<->", "0", "2", " ", "2A", "-", ">", "", "é", "\n"]


def _allowed(exc: BaseException) -> bool:
    return isinstance(exc, ValueError)


names = st.one_of(st.text(max_size=12), st.sampled_from(["H2O2", "Prx", "A", "0", "", " x"]))
equations = st.one_of(
    st.text(max_size=30), st.lists(st.sampled_from(_TOKENS), max_size=9).map(" ".join)
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.sampled_from([None, "1", True, [1.0]]),
)


@SETTINGS
@given(
    species=st.lists(st.tuples(names, numbers), max_size=4),
    reactions=st.lists(st.tuples(equations, numbers), max_size=4),
)
def test_model_api_raises_only_value_errors(species, reactions):
    m = rf.Model()
    for name, d in species:
        try:
            m.species(name, D=d)
        except Exception as exc:  # noqa: BLE001 - the property under test
            assert _allowed(exc), f"species({name!r}, D={d!r}) raised {exc!r}"
    for eq, k in reactions:
        try:
            m.reaction(eq, k=k)
        except Exception as exc:  # noqa: BLE001
            assert _allowed(exc), f"reaction({eq!r}, k={k!r}) raised {exc!r}"


def _mutate(text: str, data) -> str:
    ops = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))
    for op in ops:
        if not text:
            break
        i = data.draw(st.integers(0, len(text) - 1))
        j = data.draw(st.integers(i, min(len(text), i + 40)))
        if op == 0:
            text = text[:i] + text[j:]
        elif op == 1:
            text = text[:i] + data.draw(st.text(max_size=10)) + text[i:]
        elif op == 2:
            text = text[:i] + text[i:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + str(data.draw(numbers)) + text[j:]
    return text


@settings(SETTINGS, max_examples=max(N // 3, 1))
@given(data=st.data())
def test_mutated_scenarios_raise_only_value_errors(data):
    path = data.draw(st.sampled_from(_SCENARIOS))
    text = _mutate(path.read_text(), data)
    try:
        sc = parse_scenario(text, origin="fuzz.toml")
        if path.name == "h2o2-burst.toml":  # the fibre builder is too slow to repeat
            sc.simulation(seed=1)
    except Exception as exc:  # noqa: BLE001
        assert _allowed(exc), f"{type(exc).__name__}: {exc}\n--- input ---\n{text}"


@SETTINGS
@given(text=st.text(max_size=300))
def test_random_toml_raises_only_value_errors(text):
    try:
        parse_scenario(text, origin="fuzz.toml")
    except Exception as exc:  # noqa: BLE001
        assert _allowed(exc), f"{type(exc).__name__}: {exc}"
