"""BUILD (Bazel) is consistent with the tree and with setup.cfg, checked without Bazel.

BUILD is Starlark, whose syntax is Python's: it is evaluated here with the
few Bazel functions it calls (`glob`, `py_library`, `py_test`, `package`,
`licenses`, `exports_files`) recording the targets. Then every module of the
two packages is in a library, every test file is the source of a test, every
helper module of the tests is in a target, every file a target names exists,
and the pip dependencies BUILD names are setup.cfg's.
"""

import configparser
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _glob(include, exclude=()):
    def matches(pattern):
        # Bazel's "dir/**" is every file below dir; pathlib's is the directories only.
        pattern = pattern + "/*" if pattern.endswith("**") else pattern
        return {p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern) if p.is_file()}

    found = set().union(*(matches(p) for p in include))
    excluded = set().union(*(matches(p) for p in exclude)) if exclude else set()
    return sorted(p for p in found - excluded if "__pycache__" not in p)


@pytest.fixture(scope="module")
def build():
    targets = []

    def rule(kind):
        def record(**attributes):
            targets.append(dict(attributes, kind=kind))

        return record

    namespace = {
        "glob": _glob,
        "py_library": rule("py_library"),
        "py_test": rule("py_test"),
        "package": lambda **_: None,
        "licenses": lambda *_: None,
        "exports_files": lambda *_: None,
    }
    exec(compile((ROOT / "BUILD").read_text(), "BUILD", "exec"), namespace)
    return targets, namespace


def _named_files(target):
    files = list(target.get("srcs", [])) + list(target.get("data", []))
    if "main" in target:
        files.append(target["main"])
    return files


def test_every_package_module_is_in_a_library(build):
    targets, _ = build
    in_libraries = {src for t in targets if t["kind"] == "py_library" for src in t["srcs"]}
    modules = _glob(["tf_adaptive/**/*.py", "analysis_tools/**/*.py"])
    assert modules and not set(modules) - in_libraries


def test_every_test_file_is_the_source_of_a_test_and_every_helper_is_in_a_target(build):
    targets, _ = build
    tests = [t for t in targets if t["kind"] == "py_test"]
    names = [t["name"] for t in tests]
    assert len(names) == len(set(names)), "two tests share a name"
    test_sources = {src for t in tests for src in t["srcs"] if pathlib.PurePath(src).name.startswith("test_")}
    assert not set(_glob(["tests/**/test_*.py"])) - test_sources
    named = {f for t in targets for f in _named_files(t)}
    assert not set(_glob(["tests/**/*.py", "examples/*.py"])) - named


def test_every_file_a_target_names_exists(build):
    targets, _ = build
    missing = sorted({f for t in targets for f in _named_files(t) if not (ROOT / f).is_file()})
    assert not missing


def test_the_pip_dependencies_are_setup_cfgs(build):
    _, namespace = build
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")

    def names(section, option):
        lines = [line.strip() for line in config[section][option].splitlines()]
        return sorted(
            {
                re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower()
                for line in lines
                if line and not line.startswith("#")
            }
        )

    assert sorted(namespace["PIP_DEPENDENCIES"]) == names("options", "install_requires")
    assert sorted(namespace["TEST_PIP_DEPENDENCIES"]) == names("options.extras_require", "test")
