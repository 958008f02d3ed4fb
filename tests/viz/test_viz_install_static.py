"""The offline install of visdom's UI files (against a fake npm: no registry needed here)."""

import json
import sys
import textwrap

import pytest

from holo3d.viz import install_static as inst

_FAKE_NPM = """\
#!{python}
# Stands in for `npm pack --json --silent --pack-destination DIR SPEC...`: writes a tarball per
# spec holding the files holo3d takes from it, plus some it must leave out.
import io, json, sys, tarfile
from holo3d.viz.install_static import MATHJAX_REQUIRED, PACKAGE_FILES

args = sys.argv[1:]
dest, specs = args[4], args[5:]
out = []
for spec in specs:
    names = [src for src, _ in PACKAGE_FILES[spec]] or [
        *MATHJAX_REQUIRED, "unpacked/MathJax.js", "fonts/HTML-CSS/STIX-Web/woff/a.woff"]
    filename = spec.replace("@", "-").replace("/", "-") + ".tgz"
    with tarfile.open(f"{{dest}}/{{filename}}", "w:gz") as tar:
        for name in names:
            data = f"{{spec}}:{{name}}".encode()
            info = tarfile.TarInfo(f"package/{{name}}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.append({{"filename": filename}})
print(json.dumps(out))
"""


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(_FAKE_NPM.format(python=sys.executable))
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return npm


def test_install_writes_every_file_visdom_expects_then_skips(tmp_path, fake_npm):
    static = tmp_path / "visdom" / "static"
    assert inst.install(static, quiet=True) is True
    assert inst.missing_targets(static) == []
    assert (static / "version.built").read_text() == inst.visdom_version()
    assert (static / "js/react-react.min.js").read_text() == \
        "react@16.2.0:umd/react.production.min.js"
    assert (static / "fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular").is_file()
    mathjax = static / "js/mathjax/2.7.5"
    assert (mathjax / "config/TeX-AMS-MML_HTMLorMML.js").is_file()
    assert not (mathjax / "unpacked").exists()
    assert not (mathjax / "fonts/HTML-CSS/STIX-Web").exists()
    assert (static.parent / "user" / "style.css").is_file()
    assert inst.is_installed(static)
    assert inst.install(static, quiet=True) is False  # idempotent: already complete


def test_missing_npm_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm anywhere
    with pytest.raises(inst.StaticInstallError, match="npm is not installed"):
        inst.install(tmp_path / "static", quiet=True)
    monkeypatch.setattr(inst, "is_installed", lambda static=None: False)
    monkeypatch.setattr(inst, "visdom_static_dir", lambda: tmp_path / "static")
    assert inst.main([]) == 1
    assert "npm is not installed" in capsys.readouterr().err


def test_installed_visdom_server_makes_no_network_request(visdom_static, monkeypatch):
    """visdom's own start-up check (run by `python -m visdom.server`) must find everything."""
    import requests
    from visdom.server import build

    attempts = []

    class RecordingOpener:
        def open(self, req, *a, **k):
            attempts.append(req.full_url)
            raise AssertionError("download attempted")

    monkeypatch.setattr(build.request, "build_opener", lambda *a: RecordingOpener())
    monkeypatch.setattr(build.request, "install_opener", lambda opener: None)
    monkeypatch.setattr(requests, "get", lambda url, *a, **k: attempts.append(url))
    build.download_scripts()
    assert attempts == []


def test_manifest_matches_visdom_index_html(visdom_static):
    """Every local script/stylesheet index.html references is in the manifest or the wheel."""
    import re

    static = inst.visdom_static_dir()
    page = (static / "index.html").read_text()
    referenced = set(re.findall(r"static_url\(['\"]([^'\"]+)['\"]\)", page)) - {"../user/style.css"}
    shipped = {"js/main.js", "css/style.css", "css/network.css"}
    assert referenced - shipped <= set(inst.required_targets()), textwrap.shorten(
        json.dumps(sorted(referenced - shipped - set(inst.required_targets()))), 200)


def test_archive_round_trip_for_offline_hosts(tmp_path, fake_npm):
    online = tmp_path / "online" / "static"
    inst.install(online, quiet=True)
    archive = tmp_path / "visdom_static.tar.gz"
    count = inst.export_archive(archive, online)
    assert count == len(inst.required_targets()) + 1  # + version.built (fake MathJax: just those)

    offline = tmp_path / "offline" / "static"
    inst.install_from_archive(archive, offline)
    assert inst.is_installed(offline)
    assert (offline.parent / "user" / "style.css").is_file()
