"""docs/derivation.md and README.md name code and tests as `path::name`; every such name must exist.

A reference is an inline code span (single backticks, outside fenced blocks) of the form

    `minivae/objectives.py::iwae_backward`          a function, class or module-level table
    `minivae/model.py::VAE.log_weight_backward`     a method: Class.method
    `tests/test_objectives.py::test_iwae_...`       a test function

and is resolved as follows: the file must exist; a module under minivae/ is imported and the
attribute chain followed, and a top-level function or class must be *defined* in that module
(not merely imported into it), so a function that moves files makes the doc fail here; any other
.py file (tests/, examples/) is parsed with ``ast`` and the chain looked up among its top-level
definitions and class bodies, without importing it.  README.md is held to the same rule; the
derivation also names each method by the class that defines it (`LatentVariableModel.backward`,
not the inherited `VAE.backward`), where a reader will find its code.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "derivation.md"
README = ROOT / "README.md"

FENCED = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
REFERENCE = re.compile(r"(?P<path>[A-Za-z0-9_./-]+)::(?P<name>[A-Za-z_][A-Za-z0-9_]*"
                       r"(?:(?:\.|::)[A-Za-z_][A-Za-z0-9_]*)*)")

MIN_REFERENCES = 15
CORE = ["minivae/objectives.py::log_mean_exp",
        "minivae/objectives.py::mean_forward",
        "minivae/objectives.py::mean_backward",
        "minivae/objectives.py::iwae_forward",
        "minivae/objectives.py::iwae_backward",
        "minivae/objectives.py::OBJECTIVES",
        "minivae/gaussian.py::reparameterize_forward",
        "minivae/gaussian.py::reparameterize_backward",
        "minivae/gaussian.py::kl_normal_std_forward",
        "minivae/gaussian.py::kl_normal_std_backward",
        "minivae/gaussian.py::log_normal_forward",
        "minivae/gaussian.py::log_normal_backward",
        "minivae/likelihoods.py::Bernoulli.forward",
        "minivae/model.py::VAE.log_weight_terms",
        "minivae/model.py::VAE.log_weight_backward",
        "minivae/model.py::VAE.score_backward",
        "minivae/model.py::LatentVariableModel.forward",
        "minivae/model.py::LatentVariableModel.backward",
        "minivae/model.py::LatentVariableModel.loss_and_grads",
        "minivae/two_layer.py::TwoLayerVAE.log_weight_backward",
        "minivae/evaluate.py::log_likelihood",
        "tests/test_log_weights.py::test_log_weight_backward_matches_finite_differences",
        "tests/test_model.py::test_model_gradients_match_finite_differences"]


def find_references(text: str) -> tuple[list[str], list[str]]:
    """(well-formed `path::name` spans, malformed spans containing '::'), in document order."""
    text = FENCED.sub("", text)
    refs, malformed = [], []
    for span in SPAN.findall(text):
        if "::" not in span:
            continue
        (refs if REFERENCE.fullmatch(span.strip()) else malformed).append(span)
    return refs, malformed


def _resolve_in_module(path: str, chain: list[str]) -> str | None:
    module_name = path[:-3].replace("/", ".")
    if module_name.endswith(".__init__"):
        module_name = module_name[: -len(".__init__")]
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:                       # an import error is a finding, not a crash
        return f"cannot import {module_name}: {type(err).__name__}: {err}"
    for i, attr in enumerate(chain):
        if not hasattr(obj, attr):
            return f"{'.'.join([module_name, *chain[:i]])} has no attribute {attr!r}"
        obj = getattr(obj, attr)
        if i == 0 and (inspect.isfunction(obj) or inspect.isclass(obj)) \
                and obj.__module__ != module_name:
            return f"{attr} is imported into {module_name}, defined in {obj.__module__}"
    return None


def _resolve_in_source(file: Path, chain: list[str]) -> str | None:
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except SyntaxError as err:
        return f"cannot parse: {err}"
    body = tree.body
    for i, name in enumerate(chain):
        found = None
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and node.name == name:
                found = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found = node
        if found is None:
            return f"no definition of {'.'.join(chain[:i + 1])}"
        if i < len(chain) - 1:
            if not isinstance(found, ast.ClassDef):
                return f"{name} is not a class, so it has no {chain[i + 1]!r}"
            body = found.body
    return None


def check_reference(ref: str, root: Path = ROOT) -> str | None:
    """None if `ref` (path::name) resolves, else a sentence saying what is wrong."""
    m = REFERENCE.fullmatch(ref.strip())
    if m is None:
        return "not of the form path::name"
    path, chain = m["path"], re.split(r"\.|::", m["name"])
    file = root / path
    if not file.is_file():
        return f"no file {path}"
    if not path.endswith(".py"):
        return None
    if path.startswith("minivae/"):
        return _resolve_in_module(path, chain)
    return _resolve_in_source(file, chain)


def inherited_method(ref: str) -> str | None:
    """For `minivae/...::Class.method` naming a method that Class inherits, the class that defines
    it; else None.  `VAE.forward` resolves (attribute lookup), but the doc should say
    `LatentVariableModel.forward`: that is where a reader finds the code."""
    m = REFERENCE.fullmatch(ref.strip())
    chain = re.split(r"\.|::", m["name"]) if m else []
    if not m or not m["path"].startswith("minivae/") or len(chain) < 2 or check_reference(ref):
        return None
    cls = getattr(importlib.import_module(m["path"][:-3].replace("/", ".")), chain[0])
    if not inspect.isclass(cls) or chain[1] in vars(cls):
        return None
    owner = next((c for c in cls.__mro__ if chain[1] in vars(c)), None)
    return owner.__name__ if owner is not None else None


def broken_references(text: str, root: Path = ROOT) -> list[str]:
    refs, malformed = find_references(text)
    problems = [f"`{span}`: not of the form path::name" for span in malformed]
    for ref in dict.fromkeys(refs):
        why = check_reference(ref, root)
        if why:
            problems.append(f"`{ref}`: {why}")
    return problems


# ---------------------------------------------------------------- the document

@pytest.fixture(scope="module")
def doc_text():
    assert DOC.is_file(), f"{DOC} is missing"
    return DOC.read_text(encoding="utf-8")


def test_every_reference_in_the_derivation_resolves(doc_text):
    problems = broken_references(doc_text)
    assert not problems, "stale references in docs/derivation.md:\n  " + "\n  ".join(problems)


def test_the_derivation_has_enough_references_to_code_and_tests(doc_text):
    refs, _ = find_references(doc_text)
    unique = set(refs)
    assert len(unique) >= MIN_REFERENCES, sorted(unique)
    assert any(r.startswith("minivae/") for r in unique)
    assert any(r.startswith("tests/") for r in unique)


def test_the_derivation_names_each_method_by_the_class_that_defines_it(doc_text):
    refs = dict.fromkeys(find_references(doc_text)[0])
    inherited = [f"`{r}`: defined in {inherited_method(r)}" for r in refs if inherited_method(r)]
    assert not inherited, "name these methods by their defining class:\n  " + "\n  ".join(inherited)


def test_every_core_function_is_referenced(doc_text):
    refs = set(find_references(doc_text)[0])
    missing = [c for c in CORE if c not in refs]
    assert not missing, f"docs/derivation.md does not reference {missing}"


# ---------------------------------------------------------------- the README

def test_every_reference_in_the_readme_resolves():
    # the README may name no code at all; whatever it does name must exist
    assert README.is_file(), f"{README} is missing"
    problems = broken_references(README.read_text(encoding="utf-8"))
    assert not problems, "stale references in README.md:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------- the checker itself

@pytest.mark.parametrize("ref", [
    "minivae/objectives.py::iwae_backward",
    "minivae/objectives.py::log_mean_exp",
    "minivae/objectives.py::OBJECTIVES",                  # a table, not a function
    "minivae/model.py::VAE.log_weight_backward",
    "minivae/model.py::LatentVariableModel.backward",
    "minivae/model.py::VAE.backward",                     # inherited: found by attribute lookup
    "minivae/two_layer.py::TwoLayerVAE.log_weight_backward",
    "minivae/likelihoods.py::Bernoulli.forward",
    "tests/test_objectives.py::test_iwae_equals_log_mean_exp_and_its_weights_sum_to_one",
    "tests/test_log_weights.py::test_log_weight_backward_matches_finite_differences",
    "tests/gradcheck.py::numeric_grads",
    "tests/gradcheck.py::numeric_param_grads",
    "examples/mnist_vae.py::main",
])
def test_checker_accepts_names_that_exist(ref):
    assert check_reference(ref) is None


@pytest.mark.parametrize("ref,why", [
    ("minivae/objectives.py::no_such_function", "no attribute 'no_such_function'"),
    ("minivae/model.py::VAE.no_such_method", "no attribute 'no_such_method'"),
    ("minivae/nowhere.py::iwae_backward", "no file"),
    ("minivae/likelihoods.py::sigmoid", "imported into minivae.likelihoods"),
    ("tests/test_objectives.py::test_that_was_renamed", "no definition"),
    # names that existed before the redesign around log_weight_terms, so a stale doc fails here
    ("minivae/objectives.py::elbo_forward", "no attribute 'elbo_forward'"),
    ("minivae/objectives.py::mc_elbo_backward", "no attribute 'mc_elbo_backward'"),
    ("minivae/gaussian.py::_sum_to", "no attribute '_sum_to'"),
    ("minivae/evaluate.py::main", "no attribute 'main'"),
    ("minivae/evaluate.py::log_mean_exp", "imported into minivae.evaluate"),   # moved: one home
    ("tests/test_model.py::numeric_param_grads", "no definition"),
    ("tests/test_objectives.py::test_elbo_backward_matches_finite_differences", "no definition"),
    ("examples/mnist_vae.py::no_such_function", "no definition"),
    ("examples/mnist_vae.py::main.inner", "not a class"),
])
def test_checker_rejects_made_up_names(ref, why):
    result = check_reference(ref)
    assert result is not None and why in result, result


def test_inherited_methods_are_traced_to_the_class_that_defines_them():
    assert inherited_method("minivae/model.py::VAE.forward") == "LatentVariableModel"
    assert inherited_method("minivae/two_layer.py::TwoLayerVAE.backward") == "LatentVariableModel"
    assert inherited_method("minivae/model.py::VAE.log_weight_terms") is None
    assert inherited_method("minivae/model.py::LatentVariableModel.backward") is None
    assert inherited_method("minivae/objectives.py::iwae_backward") is None
    assert inherited_method("minivae/model.py::VAE.no_such_method") is None   # broken, not inherited


def test_references_are_read_from_code_spans_only():
    text = ("See `minivae/objectives.py::iwae_backward` and\n"
            "`minivae/objectives.py::no_such_function`;\n"
            "plain minivae/objectives.py::also_missing is prose, not a reference.\n"
            "```python\nx = `minivae/objectives.py::inside_a_fence`\n```\n"
            "A typo: `minivae/objectives.py::iwae_backward()`.\n")
    refs, malformed = find_references(text)
    assert refs == ["minivae/objectives.py::iwae_backward",
                    "minivae/objectives.py::no_such_function"]
    assert malformed == ["minivae/objectives.py::iwae_backward()"]
    problems = broken_references(text)
    assert len(problems) == 2, problems
    assert any("iwae_backward()" in p and "not of the form" in p for p in problems)
    assert any("no_such_function" in p and "no attribute" in p for p in problems)
