"""Builds only the extension: src/_filterqueue.pyx -> sersyncpy._filterqueue."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("sersyncpy._filterqueue", ["src/_filterqueue.pyx"])],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
