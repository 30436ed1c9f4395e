"""Builds the extensions, src/_filterqueue.pyx -> sersyncpy._filterqueue and
src/_fanotify.pyx -> sersyncpy._fanotify, and installs the man pages into share/man
(the rest is in pyproject.toml; MANIFEST.in puts the .pyx sources and man pages in the sdist).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("sersyncpy._filterqueue", ["src/_filterqueue.pyx"]),
         Extension("sersyncpy._fanotify", ["src/_fanotify.pyx"])],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
    # <prefix>/share/man/man8/sersyncpy.8: `man sersyncpy` finds it in a venv whose bin is on
    # PATH (manpath maps each PATH bin directory to the share/man beside it).
    data_files=[
        ("share/man/man8", ["man/sersyncpy.8"]),
        ("share/man/man5", ["man/sersyncpy-confxml.5"]),
    ],
)
