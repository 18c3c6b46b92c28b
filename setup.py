"""Build of the optional C accelerator; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional=True: without a C compiler or Python headers the install still succeeds and
        # fdscope runs its pure-Python twins of these loops (fdscope/speedups.py says which).
        Extension("_fdscope_speedups", ["csrc/fdscope_speedups.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
    ],
)
