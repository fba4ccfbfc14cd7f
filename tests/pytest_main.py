"""Entry point for build systems that run one test file as a program (Bazel's py_test)."""

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-q", *sys.argv[1:]]))
