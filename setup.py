"""Builds verifier's one compiled module, the loop of `show --json` (verifier/wire/_showloop.c).

It is optional: without a C compiler or Python's headers the install still succeeds and `show`
reads on the object path, the reference (the same output, slower, said once on stderr; `make
test` in CI insists on the compiled loop). `make wheel` builds a binary wheel with it inside."""

import sys

from setuptools import Extension, setup

# no fused multiply-add: every float operation must round as Python's does (MSVC: /fp:precise
# without /fp:contract does not contract)
FLAGS = ["/O2", "/fp:precise"] if sys.platform == "win32" else ["-O2", "-ffp-contract=off", "-std=c11"]

setup(
    ext_modules=[
        Extension("verifier.wire._showloop", ["verifier/wire/_showloop.c"], optional=True, extra_compile_args=FLAGS)
    ]
)
