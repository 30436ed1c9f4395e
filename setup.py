"""Builds only the extensions: src/_filterqueue.pyx -> sersyncpy._filterqueue and
src/_fanotify.pyx -> sersyncpy._fanotify."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("sersyncpy._filterqueue", ["src/_filterqueue.pyx"]),
         Extension("sersyncpy._fanotify", ["src/_fanotify.pyx"])],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
