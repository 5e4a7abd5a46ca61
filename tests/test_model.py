"""Reaction parsing and every bad model input (the message must name the bad thing)."""

import math

import pytest

import redoxfield as rf
from redoxfield.model import format_equation, parse_equation


@pytest.mark.parametrize(
    ("text", "reactants", "products"),
    [
        ("A + B -> C", ("A", "B"), ("C",)),
        ("2 A -> B", ("A", "A"), ("B",)),
        ("2A -> B", ("A", "A"), ("B",)),
        ("A + A -> B", ("A", "A"), ("B",)),
        ("-> A", (), ("A",)),
        ("0 -> A", (), ("A",)),
        ("A ->", ("A",), ()),
        ("A -> 0", ("A",), ()),
        ("A -> 2 B", ("A",), ("B", "B")),
        ("  H2O2+Prx->PrxOx ", ("H2O2", "Prx"), ("PrxOx",)),
        ("A -> B + 3 C", ("A",), ("B", "C", "C", "C")),
    ],
)
def test_parse_forms(text, reactants, products):
    assert parse_equation(text) == (reactants, products)


def test_canonical_form():
    assert format_equation(("A", "A"), ("B",)) == "2 A -> B"
    assert format_equation((), ("A",)) == "0 -> A"
    assert format_equation(("A",), ()) == "A -> 0"
    assert format_equation(("A", "B"), ("C", "C")) == "A + B -> 2 C"


def _model():
    m = rf.Model()
    for s in ("A", "B", "C", "D"):
        m.species(s, D=1.0)
    return m


def test_reaction_properties():
    m = _model()
    r = m.reaction("2 A -> B", k=5.0)
    assert r.order == 2 and r.homodimer and r.k_unit == "1/(M*s)"
    assert m.reaction("A + B -> C", k=1.0).homodimer is False
    assert m.reaction("-> A", k=1.0).k_unit == "uM/s"
    assert m.reaction("A ->", k=1.0).k_unit == "1/s"
    src = m.reaction("-> B", flux=100.0)
    assert src.k is None and src.flux == 100.0 and src.k_unit == "molecules/s"


def test_default_names_unique():
    m = _model()
    a = m.reaction("A -> B", k=1.0)
    b = m.reaction("A -> B", k=2.0)
    c = m.reaction("-> A", k=1.0, region="src")
    assert a.name == "A -> B"
    assert b.name == "A -> B #2"
    assert c.name == "0 -> A @src"
    with pytest.raises(ValueError, match="'A -> B' is used twice"):
        m.reaction("B -> A", k=1.0, name="A -> B")


def test_unknown_species_message_exact():
    m = rf.Model()
    m.species("H2O")
    with pytest.raises(ValueError) as exc:
        m.reaction("H2O3 -> H2O", k=1.0)
    assert str(exc.value) == "unknown species 'H2O3' in reaction 'H2O3 -> H2O'"


def test_order_three_message_exact():
    m = _model()
    with pytest.raises(ValueError) as exc:
        m.reaction("A + B + C -> D", k=1.0)
    assert str(exc.value) == (
        "reaction 'A + B + C -> D' has order 3; only orders 0, 1 and 2 are supported"
    )
    with pytest.raises(ValueError, match="has order 3"):
        m.reaction("3 A -> B", k=1.0)
    with pytest.raises(ValueError, match="has order 3"):
        m.reaction("2 A + B -> C", k=1.0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("A B -> C", "'A B'"),
        ("A + -> C", "empty term"),
        ("A -> B -> C", "exactly one '->'"),
        ("A = B", "exactly one '->'"),
        ("A <-> B", "irreversible"),
        ("A => B", "exactly one '->'"),
        ("->", "neither reactants nor products"),
        ("0 -> 0", "neither reactants nor products"),
        ("0 A -> B", ">= 1"),
        ("A + 0 -> B", "'0'"),
        ("A* -> B", "'A*'"),
        ("", "exactly one '->'"),
    ],
)
def test_malformed(text, fragment):
    m = _model()
    with pytest.raises(ValueError, match="malformed reaction|irreversible") as exc:
        m.reaction(text, k=1.0)
    assert fragment in str(exc.value)
    assert repr(text) in str(exc.value)


def test_reaction_not_a_string():
    with pytest.raises(ValueError, match="must be a string"):
        _model().reaction(42, k=1.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_bad_rate_names_reaction_and_value(bad):
    m = _model()
    with pytest.raises(ValueError) as exc:
        m.reaction("A -> B", k=bad)
    msg = str(exc.value)
    assert "'A -> B'" in msg and repr(float(bad)) in msg and "finite and non-negative" in msg


@pytest.mark.parametrize("bad", ["1.0", None, True, [1.0]])
def test_rate_not_a_number(bad):
    m = _model()
    with pytest.raises(ValueError, match="'A -> B'"):
        m.reaction("A -> B", k=bad)


def test_zero_rate_allowed():
    assert _model().reaction("A -> B", k=0.0).k == 0.0


def test_k_and_flux_exclusive():
    m = _model()
    with pytest.raises(ValueError, match="exactly one of k and flux"):
        m.reaction("-> A", k=1.0, flux=2.0)
    with pytest.raises(ValueError, match="exactly one of k and flux"):
        m.reaction("-> A")
    with pytest.raises(ValueError, match="only for order-0"):
        m.reaction("A -> B", flux=2.0)
    with pytest.raises(ValueError, match="flux of reaction '-> A'"):
        m.reaction("-> A", flux=-5.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_D_names_species_and_value(bad):
    m = rf.Model()
    with pytest.raises(ValueError) as exc:
        m.species("H2O2", D=bad)
    msg = str(exc.value)
    assert "'H2O2'" in msg and repr(float(bad)) in msg
    assert "H2O2" not in m.species_names


def test_duplicate_species():
    m = rf.Model()
    m.species("A")
    with pytest.raises(ValueError, match="species 'A' is declared twice"):
        m.species("A", D=1.0)


@pytest.mark.parametrize("bad", ["", "2A", "A B", "A+", "H2O2-", "0", None, "Ca2+"])
def test_bad_species_names(bad):
    with pytest.raises(ValueError, match="bad species name"):
        rf.Model().species(bad)


def test_bad_scope_and_name_types():
    m = _model()
    with pytest.raises(ValueError, match="region must be a non-empty string"):
        m.reaction("A -> B", k=1.0, region="")
    with pytest.raises(ValueError, match="without '/'"):
        m.reaction("A -> B", k=1.0, name="a/b")


def test_dict_round_trip_and_equality():
    m = _model()
    m.reaction("2 A -> B", k=5.0, name="dimer")
    m.reaction("-> C", flux=10.0, region="src")
    m.reaction("D ->", k=1.0, compartment="cytosol")
    again = rf.Model.from_dict(m.to_dict())
    assert again == m
    assert again.reactions == m.reactions
    other = _model()
    assert other != m
    assert "dimer" in m.describe()
