"""Package discovery for the mapped folders.

``integrations/`` and ``training/`` live at the top level (as the project layout asks) but install
as ``flowsteer.integrations`` and ``flowsteer.training`` through ``package-dir`` in pyproject.toml;
pyproject's ``packages.find`` cannot add that prefix, so the package list is computed here.
"""

from setuptools import find_packages, setup


def _mapped(folder: str, prefix: str) -> list[str]:
    return [prefix] + [f"{prefix}.{name}" for name in find_packages(folder)]


setup(
    packages=find_packages(include=["flowsteer", "flowsteer.*"])
    + _mapped("integrations", "flowsteer.integrations")
    + _mapped("training", "flowsteer.training")
)
