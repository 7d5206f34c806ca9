"""constraints.txt, the versions the tests passed with: every runtime
dependency in pyproject.toml is pinned in it (``==``, within pyproject's own
range), and every way keyops is installed uses it: deploy/install.sh passes
it to pip (default SRC/constraints.txt), so the image, whose build stage
copies it beside pyproject.toml, and the systemd steps get those versions;
.ci/run installs the test environment with it."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from .common import DEPLOY, ROOT, Report, ToolMissing
from .container import _instructions

CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
INSTALL_SH = DEPLOY / "install.sh"
DOCKERFILE = DEPLOY / "Dockerfile"
CI_RUN = ROOT / ".ci" / "run"
#: The optional groups that make up a runtime install (``keyops[all]``).
RUNTIME_EXTRAS = ("vault", "aws", "redis")


def normalize(name: str) -> str:
    """PEP 503 name: case and runs of -_. do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str, report: Report) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        if match is None:
            report.fail(f"constraints.txt:{number}: {line!r} is not pinned as name==version")
            continue
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def runtime_requirements(pyproject: dict[str, object]) -> list[str]:
    project = pyproject.get("project")
    assert isinstance(project, dict)
    requirements = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in RUNTIME_EXTRAS:
        requirements += [r for r in optional.get(extra, []) if not normalize(r).startswith("keyops[")]
    return requirements


def check(report: Report) -> None:
    try:
        from packaging.requirements import Requirement
        from packaging.version import InvalidVersion, Version
    except ImportError:
        raise ToolMissing("the 'packaging' module is missing (pip install packaging)") from None
    if not CONSTRAINTS.is_file():
        report.fail("constraints.txt is missing at the top of the repository (see README: Pinned versions)")
        return
    pins = read_pins(CONSTRAINTS.read_text(encoding="utf-8"), report)
    report.note(f"constraints.txt pins {len(pins)} packages")
    requirements = runtime_requirements(tomllib.loads(PYPROJECT.read_text(encoding="utf-8")))
    for text in requirements:
        requirement = Requirement(text)
        name = normalize(requirement.name)
        pinned = pins.get(name)
        if pinned is None:
            report.fail(f"constraints.txt does not pin runtime dependency {requirement.name} (pyproject: {text!r})")
            continue
        try:
            inside = requirement.specifier.contains(Version(pinned), prereleases=True)
        except InvalidVersion:
            inside = False
        report.expect(inside, f"constraints.txt pins {requirement.name}=={pinned}, outside pyproject's {text!r}")
    _check_users(report)


def _check_users(report: Report) -> None:
    install = INSTALL_SH.read_text(encoding="utf-8")
    pip_lines = [line for line in install.splitlines() if " install " in line and "pip" in line]
    report.expect(
        bool(pip_lines) and all("--constraint" in line or " -c " in line for line in pip_lines),
        "deploy/install.sh: its pip install does not use the constraints file (--constraint)",
    )
    report.expect("constraints.txt" in install, "deploy/install.sh: no default constraints.txt")
    # install.sh reads SRC/constraints.txt: the build stage must put it
    # beside pyproject.toml (the SRC it installs from).
    steps = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    build = steps[: froms[-1]] if len(froms) > 1 else steps
    sources = [
        [Path(a).name for a in shlex.split(args) if not a.startswith("--")][:-1]
        for word, args in build
        if word == "COPY"
    ]
    report.expect(
        any("pyproject.toml" in names and "constraints.txt" in names for names in sources),
        "deploy/Dockerfile: the build stage does not COPY constraints.txt beside pyproject.toml",
    )
    installs = [args for word, args in build if word == "RUN" and "keyops-install" in args]
    report.expect(
        bool(installs) and all("CONSTRAINTS=" not in args or "constraints.txt" in args for args in installs),
        "deploy/Dockerfile: the runtime install overrides CONSTRAINTS with another file",
    )
    if CI_RUN.is_file():
        ci = CI_RUN.read_text(encoding="utf-8")
        editable = [line for line in ci.splitlines() if "pip install" in line and "-e " in line]
        report.expect(
            bool(editable) and all("-c constraints.txt" in line for line in editable),
            ".ci/run: the test environment is not installed with -c constraints.txt",
        )
