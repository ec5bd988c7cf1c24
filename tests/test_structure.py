"""The house rules of issue 16, held by benchmarks/structure.py: no import circle between crmlab's
modules and no private name used across modules."""
from __future__ import annotations

from .conftest import load_benchmark


def _structure():
    return load_benchmark("structure", "crmlab_structure")


def test_no_import_circle_and_no_private_name_across_modules():
    facts = _structure().facts()
    assert facts["modules"] > 50  # it did read the package
    assert facts["circles"] == []
    assert facts["layer_violations"] == []
    assert facts["private_names_across_modules"] == []


def test_the_checker_finds_a_circle_and_a_private_name(tmp_path, monkeypatch):
    structure = _structure()
    pkg = tmp_path / "crmlab"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "one.py").write_text("def f():\n    from crmlab.b import g\n    return g()\n")
    (pkg / "b.py").write_text("from crmlab.a.one import f\nimport crmlab.a.one as one\n\n"
                              "def g():\n    return one._hidden\n")
    (pkg / "c.py").write_text("from crmlab.b import _secret\n")
    (pkg / "a" / "record.py").write_text("")  # a pipeline package ...
    (pkg / "a" / "two.py").write_text("from crmlab.report import render_html\n")  # ... importing the report
    (pkg / "report.py").write_text("")
    monkeypatch.setattr(structure, "SRC", tmp_path)
    facts = structure.facts()
    assert facts["circles"] == [["crmlab.a.one", "crmlab.b"]]
    assert facts["layer_violations"] == ["crmlab.a.two imports crmlab.report"]
    assert facts["private_names_across_modules"] == ["crmlab.b uses crmlab.a.one._hidden",
                                                     "crmlab.c imports crmlab.b._secret"]
