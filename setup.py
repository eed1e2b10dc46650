"""Build the optional C run scanner; without a compiler snaptool installs and uses the Python loop."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("snaptool.rdb._fastscan", ["snaptool/rdb/_fastscan.c"], optional=True)])
