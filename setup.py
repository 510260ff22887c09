"""Builds verifier's one compiled module, the loop of `show --json` (verifier/wire/_showloop.c).

It is optional: without a C compiler or Python's headers the install still succeeds and `show`
runs the same loop in Python (slower; `make test` in CI insists on the compiled one)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "verifier.wire._showloop",
            ["verifier/wire/_showloop.c"],
            optional=True,
            # no fused multiply-add: every float operation rounds as Python's does
            extra_compile_args=["-O2", "-ffp-contract=off", "-std=c11"],
        )
    ]
)
