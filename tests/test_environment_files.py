"""environment.yml mirrors pyproject.toml's dependencies, so conda users get the same pins."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def names_and_pins(requirements):
    return {re.split(r"[<>=!\[]", r, 1)[0].strip().lower(): r.replace(" ", "") for r in requirements}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = names_and_pins(project["dependencies"] + project["optional-dependencies"]["test"])
    lines = [l.strip()[2:] for l in (REPO / "environment.yml").read_text().splitlines()
             if l.strip().startswith("- ") and not l.strip()[2:].startswith(("-", "python", "pip", "nodejs"))]
    have = names_and_pins(l.split("#")[0].strip() for l in lines)
    missing = {n: pin for n, pin in wanted.items() if have.get(n) != pin}
    assert not missing, f"environment.yml differs from pyproject.toml: {missing}"
