"""Populates visdom's ``static/`` folder from the npm registry so its server starts offline.

visdom 0.2.4's ``python -m visdom.server`` fetches its UI's JS/CSS/fonts from CDNs at every start
and dies without internet. It skips the fetch when every file is present and
``static/version.built`` holds visdom's version, so this module writes exactly the files (names and
sub-folders) its ``visdom.server.build.download_scripts`` expects, taken from the same releases on
the npm registry via ``npm pack``, then writes that marker. Run at install time:

    python -m holo3d.viz.install_static [--force | --check]

For hosts without registry access: ``--export FILE.tar.gz`` on a machine that has the files, then
``--from-archive FILE.tar.gz`` on the offline host (same visdom version).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

_BOOTSTRAP_FONT = "glyphicons-halflings-regular"
_MATHJAX_TARGET = "js/mathjax/2.7.5"

# npm spec -> [(path inside the package, target under visdom/static)]. Targets mirror the names
# visdom's download_scripts gives to its CDN downloads (e.g. react -> js/react-react.min.js).
PACKAGE_FILES: Dict[str, List[Tuple[str, str]]] = {
    "jquery@3.1.1": [("dist/jquery.min.js", "js/jquery.min.js")],
    "bootstrap@3.3.7": [
        ("dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
        ("dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
        *[(f"dist/fonts/{_BOOTSTRAP_FONT}.{ext}", f"fonts/{_BOOTSTRAP_FONT}.{ext}")
          for ext in ("eot", "woff2", "woff", "ttf", "svg")],
        # visdom's downloader keeps the URL fragment in the file name; keep both spellings.
        (f"dist/fonts/{_BOOTSTRAP_FONT}.svg",
         f"fonts/{_BOOTSTRAP_FONT}.svg#glyphicons_halflingsregular"),
    ],
    "react@16.2.0": [("umd/react.production.min.js", "js/react-react.min.js")],
    "react-dom@16.2.0": [("umd/react-dom.production.min.js", "js/react-dom.min.js")],
    "react-modal@3.1.10": [("dist/react-modal.min.js", "js/react-modal.min.js")],
    "plotly.js-dist-min@2.11.1": [("plotly.min.js", "js/plotly-plotly.min.js")],
    "sjcl@1.0.7": [("sjcl.js", "js/sjcl.js")],
    "layout-bin-packer@1.4.0": [
        ("dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
        ("dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"),
    ],
    "d3@3.5.17": [("d3.min.js", "js/d3.v3.min.js")],
    "d3-selection-multi@1.0.1": [("build/d3-selection-multi.js", "js/d3-selection-multi.v1.js")],
    "save-svg-as-png@1.4.17": [("lib/saveSvgAsPng.js", "js/saveSvgAsPng.js")],
    "react-resizable@1.4.6": [("css/styles.css", "css/react-resizable-styles.css")],
    "react-grid-layout@0.16.3": [("css/styles.css", "css/react-grid-layout-styles.css")],
    "classnames@2.2.5": [("index.js", "fonts/classnames")],
    "mathjax@2.7.5": [],  # copied as a tree, see _mathjax_target
}

# The MathJax files visdom's downloader checks for; the rest of the runtime comes along so that
# MathJax can lazy-load its output jax offline too.
MATHJAX_REQUIRED = (
    "MathJax.js", "config/Safe.js", "config/TeX-AMS-MML_HTMLorMML.js", "extensions/Safe.js",
    "jax/output/SVG/fonts/TeX/fontdata.js", "jax/output/SVG/jax.js",
    "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js", "jax/output/SVG/config.js",
)
_MATHJAX_TREES = ("config/", "extensions/", "jax/", "localization/en/", "fonts/HTML-CSS/TeX/woff/")
_MATHJAX_SKIP = re.compile(r"^jax/output/[^/]+/fonts/(?!TeX/)|^config/.*-full\.js$")


_TARGET_SET = frozenset(t for files in PACKAGE_FILES.values() for _, t in files)


class StaticInstallError(RuntimeError):
    """The static files could not be installed (npm missing, registry unreachable, ...)."""


def visdom_static_dir() -> Path:
    """The ``static/`` folder of the installed visdom package (where its server serves from)."""
    import visdom

    return Path(visdom.__file__).resolve().parent / "static"


def visdom_version() -> str:
    import visdom

    return visdom.__version__


def required_targets() -> List[str]:
    """Every file (relative to static/) the server's start-up check and index.html need."""
    targets = [t for files in PACKAGE_FILES.values() for _, t in files]
    return targets + [f"{_MATHJAX_TARGET}/{p}" for p in MATHJAX_REQUIRED]


def missing_targets(static: Path) -> List[str]:
    return [t for t in required_targets() if not (static / t).is_file()]


def is_installed(static: Path | None = None) -> bool:
    """All files present and the marker matches visdom's version (so its server skips downloads)."""
    static = static or visdom_static_dir()
    marker = static / "version.built"
    if not marker.is_file() or marker.read_text().strip() != visdom_version():
        return False
    return not missing_targets(static)


def npm_pack(specs: List[str], dest: Path) -> Dict[str, Path]:
    """Downloads the registry tarballs of ``specs`` into ``dest``; returns spec -> tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise StaticInstallError(
            "npm is not installed: it is needed once, at install time, to fetch visdom's UI files "
            "from the npm registry (apt-get install npm, or install Node.js).")
    cmd = [npm, "pack", "--json", "--silent", "--pack-destination", str(dest), *specs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise StaticInstallError(f"`npm pack` failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    # npm reports in input order; each entry names its tarball.
    entries = json.loads(proc.stdout)
    return {spec: dest / entry["filename"] for spec, entry in zip(specs, entries)}


def _write_member(tar: tarfile.TarFile, name: str, target: Path) -> None:
    member = tar.getmember(f"package/{name}")
    source = tar.extractfile(member)
    if source is None:
        raise StaticInstallError(f"{name} is not a regular file in {tar.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)


def _mathjax_target(name: str) -> bool:
    """Whether a MathJax package path belongs to the runtime we ship: the default TeX fonts only
    (the other families are ~13 MB visdom's config never loads), no sources, no "-full" configs."""
    if name == "MathJax.js":
        return True
    return name.startswith(_MATHJAX_TREES) and not _MATHJAX_SKIP.search(name)


def _extract_package(spec: str, tarball: Path, static: Path) -> int:
    with tarfile.open(tarball, "r:gz") as tar:
        if spec.startswith("mathjax@"):
            names = [m.name[len("package/"):] for m in tar.getmembers() if m.isfile()]
            pairs = [(n, f"{_MATHJAX_TARGET}/{n}") for n in names if _mathjax_target(n)]
        else:
            pairs = PACKAGE_FILES[spec]
        for name, target in pairs:
            _write_member(tar, name, static / target)
    return len(pairs)


def _ensure_user_stylesheet(static: Path) -> None:
    """index.html links ``static/../user/style.css`` (a hook for custom CSS) that the wheel lacks;
    an empty one stops the server logging a missing-file error on every page load."""
    user_css = static.parent / "user" / "style.css"
    if not user_css.exists():
        user_css.parent.mkdir(parents=True, exist_ok=True)
        user_css.write_text("/* custom visdom styles (optional) */\n")


def install(static: Path | None = None, force: bool = False, quiet: bool = False) -> bool:
    """Populates ``static``; returns False when it was already complete (nothing done)."""
    static = static or visdom_static_dir()
    if not force and is_installed(static):
        if not quiet:
            print(f"visdom static files already installed in {static}")
        return False
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="holo3d-npm-") as tmp:
        tarballs = npm_pack(list(PACKAGE_FILES), Path(tmp))
        count = sum(_extract_package(s, t, static) for s, t in tarballs.items())
    missing = missing_targets(static)
    if missing:
        raise StaticInstallError(f"still missing after install: {missing}")
    _ensure_user_stylesheet(static)
    # Written last: visdom's server trusts this marker and then never downloads.
    (static / "version.built").write_text(visdom_version())
    if not quiet:
        print(f"installed {count} visdom static files into {static} "
              f"in {time.perf_counter() - start:.1f} s")
    return True


def _archived(rel: str) -> bool:
    return rel == "version.built" or rel.startswith(f"{_MATHJAX_TARGET}/") or rel in _TARGET_SET


def export_archive(archive: Path, static: Path | None = None) -> int:
    """Packs the installed UI files into ``archive`` (.tar.gz) for hosts that cannot reach the
    registry (``--from-archive`` there); files that come with visdom's wheel are left out."""
    static = static or visdom_static_dir()
    if not is_installed(static):
        raise StaticInstallError(f"nothing to export: {static} is incomplete; install it first")
    files = [p for p in sorted(static.rglob("*"))
             if p.is_file() and _archived(p.relative_to(static).as_posix())]
    with tarfile.open(archive, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(static).as_posix())
    return len(files)


def install_from_archive(archive: Path, static: Path | None = None) -> None:
    """Installs an ``export_archive`` file; it must come from the same visdom version."""
    static = static or visdom_static_dir()
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(static, filter="data")  # "data": no absolute paths, links or ../ escapes
    _ensure_user_stylesheet(static)
    if not is_installed(static):
        marker = static / "version.built"
        built = marker.read_text().strip() if marker.is_file() else "?"
        raise StaticInstallError(f"{archive} does not complete {static} for visdom "
                                 f"{visdom_version()} (archive built for {built}, missing: "
                                 f"{missing_targets(static)[:5]})")


def _parse_args(argv: List[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="re-fetch even if already installed")
    mode.add_argument("--check", action="store_true", help="only report; exit 1 if incomplete")
    mode.add_argument("--export", type=Path, metavar="TAR_GZ",
                      help="pack the installed files for a host without registry access")
    mode.add_argument("--from-archive", type=Path, metavar="TAR_GZ",
                      help="install from a file made with --export (no network)")
    return parser.parse_args(argv)


def main(argv: List[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.check:
            ok = is_installed()
            state = "complete" if ok else "INCOMPLETE"
            print(f"visdom static files {state} in {visdom_static_dir()}")
            return 0 if ok else 1
        if args.export:
            print(f"exported {export_archive(args.export)} files to {args.export}")
        elif args.from_archive:
            install_from_archive(args.from_archive)
            print(f"installed visdom static files from {args.from_archive}")
        else:
            install(force=args.force)
    except ImportError as exc:
        print(f"error: visdom is not installed ({exc})", file=sys.stderr)
        return 1
    except (StaticInstallError, OSError, tarfile.TarError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
