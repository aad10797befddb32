"""Generate `texmap.tsv`: which TeX Live package and which Debian package ship each .sty/.cls/.bst/.bbx/.cbx.

Run on a Debian machine with apt (the committed file was made on Debian bookworm, TeX Live 2022):

    python -m research_mcp.latex.gen_texmap [--out research_mcp/latex/texmap.tsv]

Sources, all TeX Live's or Debian's own lists, nothing written by hand:
* the Debian package of a file: the file list of every Debian `texlive-*` package (and `lmodern`, `tex-gyre`):
  `/var/lib/dpkg/info/<pkg>.list` for installed ones, else `apt-get download` of the package into a temporary
  folder and its `dpkg-deb` member list (documentation packages `*-doc` are skipped: they hold no run files);
* the TeX Live (tlmgr) package of a file: `tlp_from_runfile` in texdoc's `Data.tlpdb.lua`, which TeX Live
  generates from its package database (texlive.tlpdb) and Debian ships in texlive-base; where it names no
  package, the folder under `tex/<format>/` the file lives in, which is the TeX Live package name by convention.

The output is one line per TeX Live package: `tlmgr-name<TAB>debian-package<TAB>file file ...`, after a
`#` header saying where and when it was made. `research_mcp.latex.packages` reads it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

KINDS = (".sty", ".cls", ".bst", ".bbx", ".cbx")
DATA_LUA = Path("/usr/share/texlive/texmf-dist/scripts/texdoc/Data.tlpdb.lua")
EXTRA_PACKAGES = ("lmodern", "tex-gyre")
SKIP = re.compile(r"-doc$|^texlive-full$|^texlive-lang-all$|-links$")
# The packages a missing file is most usefully pinned to come first when two ship the same name.
ORDER = ("texlive-latex-base", "texlive-latex-recommended", "texlive-latex-extra", "texlive-science")


def _run(argv: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=cwd).stdout


def tlp_from_runfile(path: Path = DATA_LUA) -> dict[str, str]:
    """Runfile base name (no extension) -> TeX Live package, from texdoc's data."""
    text = path.read_text(encoding="utf-8")
    start = text.index("local tlp_from_runfile = {")
    end = text.index("\nlocal ", start + 10)
    mapping: dict[str, str] = {}
    for name, packages in re.findall(r'\["([^"]+)"\] = \{(.*?)\},', text[start:end]):
        found = re.findall(r'\["([^"]+)"\]=true', packages)
        if found:
            mapping[name] = sorted(found)[0]
    return mapping


def debian_packages() -> list[str]:
    names = _run(["apt-cache", "pkgnames", "texlive-"]).split()
    names = [n for n in names if not SKIP.search(n)] + list(EXTRA_PACKAGES)
    return sorted(set(names), key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def file_list(package: str, scratch: Path) -> list[str]:
    listed = Path(f"/var/lib/dpkg/info/{package}.list")
    if listed.is_file() and "install ok installed" in _run(["dpkg-query", "-W", "-f=${Status}", package]):
        return listed.read_text().splitlines()
    _run(["apt-get", "download", "-q", package], cwd=scratch)
    [deb] = scratch.glob(f"{package}_*.deb")
    try:
        members = _run(["dpkg-deb", "-c", str(deb)])
    finally:
        deb.unlink()
    return [line.split(None, 5)[-1].lstrip(".") for line in members.splitlines() if line]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate texmap.tsv from Debian and TeX Live file lists.")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("texmap.tsv"))
    args = parser.parse_args(argv)
    runfiles = tlp_from_runfile()
    owner: dict[str, tuple[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package in debian_packages():
            try:
                paths = file_list(package, Path(tmp))
            except (subprocess.CalledProcessError, ValueError) as exc:
                sys.stderr.write(f"{package}: skipped ({exc})\n")
                continue
            for path in paths:
                name = path.rsplit("/", 1)[-1]
                if not name.endswith(KINDS) or name in owner or "/tex" not in path or "/doc/" in path:
                    continue
                folder = re.search(r"/(?:tex|[a-z]*bibtex)/[^/]+/([^/]+)/", path)
                tlpkg = runfiles.get(name.rsplit(".", 1)[0]) or (folder.group(1) if folder else package)
                owner[name] = (tlpkg, package)
            sys.stderr.write(f"{package}: {len(owner)} files so far\n")
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, key in owner.items():
        grouped[key].append(name)
    version = _run(["dpkg-query", "-W", "-f=${Version}", "texlive-base"]).strip()
    lines = [
        f"# made by `python -m research_mcp.latex.gen_texmap` from Debian texlive {version} file lists and "
        "TeX Live's tlp_from_runfile (texdoc Data.tlpdb.lua)",
        "# tlmgr-package<TAB>debian-package<TAB>files",
    ]
    lines += [f"{tl}\t{deb}\t{' '.join(sorted(files))}" for (tl, deb), files in sorted(grouped.items())]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sys.stderr.write(f"wrote {args.out}: {len(owner)} files in {len(grouped)} packages\n")


if __name__ == "__main__":
    main()
