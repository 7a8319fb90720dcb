"""docs/derivation.md names code and tests as `path::name`; every such name must still exist.

A reference is an inline code span (single backticks, outside fenced blocks) of the form

    `minivae/objectives.py::iwae_backward`          a function or class
    `minivae/model.py::VAE.backward`                a method: Class.method
    `tests/test_objectives.py::test_iwae_...`       a test function

and is resolved as follows: the file must exist; a module under minivae/ is imported and the
attribute chain followed, and a top-level function or class must be *defined* in that module
(not merely imported into it), so a function that moves files makes the doc fail here; any other
.py file (tests/, examples/) is parsed with ``ast`` and the chain looked up among its top-level
definitions and class bodies, without importing it.
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

FENCED = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
REFERENCE = re.compile(r"(?P<path>[A-Za-z0-9_./-]+)::(?P<name>[A-Za-z_][A-Za-z0-9_]*"
                       r"(?:(?:\.|::)[A-Za-z_][A-Za-z0-9_]*)*)")

MIN_REFERENCES = 15
CORE = ["minivae/objectives.py::elbo_forward",
        "minivae/objectives.py::iwae_forward",
        "minivae/objectives.py::iwae_backward",
        "minivae/gaussian.py::reparameterize_forward",
        "minivae/gaussian.py::reparameterize_backward",
        "minivae/gaussian.py::kl_normal_std_forward",
        "minivae/gaussian.py::kl_normal_std_backward",
        "minivae/gaussian.py::log_normal_forward",
        "minivae/likelihoods.py::Bernoulli.forward",
        "minivae/model.py::VAE.backward",
        "minivae/evaluate.py::log_likelihood"]


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


def test_every_core_function_is_referenced(doc_text):
    refs = set(find_references(doc_text)[0])
    missing = [c for c in CORE if c not in refs]
    assert not missing, f"docs/derivation.md does not reference {missing}"


# ---------------------------------------------------------------- the checker itself

@pytest.mark.parametrize("ref", [
    "minivae/objectives.py::iwae_backward",
    "minivae/model.py::VAE.backward",
    "minivae/likelihoods.py::Bernoulli.forward",
    "tests/test_objectives.py::test_iwae_equals_log_mean_exp_and_its_weights_sum_to_one",
    "tests/gradcheck.py::numeric_grads",
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
    ("examples/mnist_vae.py::no_such_function", "no definition"),
    ("examples/mnist_vae.py::main.inner", "not a class"),
])
def test_checker_rejects_made_up_names(ref, why):
    result = check_reference(ref)
    assert result is not None and why in result, result


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
