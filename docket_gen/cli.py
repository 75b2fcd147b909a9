"""docket-gen: compile proto folders into an importable package of typed modules."""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import click

from .protoc import collect_protos, run_protoc


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument(
    "proto_dirs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the generated package tree into (put it on sys.path).",
)
@click.option(
    "-I",
    "--include",
    "includes",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Extra import root for protos that are imported but not generated.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if OUT is not up to date.")
@click.option(
    "--diagrams", is_flag=True, help="Also write <file>_docket.md: each graph as a Mermaid diagram."
)
@click.option(
    "--views",
    is_flag=True,
    help="Also write <file>_views.postgres.sql and <file>_views.sqlite.sql: typed SQL views "
    "of the kept step results (apply them with `docket views apply`).",
)
@click.version_option(package_name="docket-proto")
def main(
    proto_dirs: tuple[Path, ...],
    out: Path,
    includes: tuple[Path, ...],
    check: bool,
    diagrams: bool,
    views: bool,
) -> None:
    """Generate *_pb2.py, *_pb2.pyi and *_docket.py for every .proto under PROTO_DIRS.

    Docket's options proto and the well-known types are on the import path
    already. Errors are printed as file:line:col: message.
    """
    files = [f for root in proto_dirs for f in collect_protos(root)]
    if not files:
        raise click.UsageError(f"no .proto files under {', '.join(map(str, proto_dirs))}")
    with tempfile.TemporaryDirectory(prefix="docket-gen-") as tmp:
        staging, scratch = Path(tmp) / "out", Path(tmp) / "bin"
        staging.mkdir()
        scratch.mkdir()
        extras = [name for name, wanted in (("diagrams", diagrams), ("views", views)) if wanted]
        run = run_protoc(proto_dirs, includes, files, staging, scratch, extras)
        if run.returncode != 0:
            for line in run.errors:
                click.echo(line, err=True)
            click.echo(f"docket-gen: protoc failed; nothing written to {out}", err=True)
            sys.exit(1)
        _add_package_markers(staging)
        generated = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
        stale = [p for p in generated if not _same(staging / p, out / p)]
        if check:
            for path in stale:
                click.echo(f"stale: {out / path}", err=True)
            if stale:
                click.echo("docket-gen: generated code is out of date; run docket-gen", err=True)
                sys.exit(1)
            click.echo(f"docket-gen: {out} is up to date ({len(generated)} files)")
            return
        for path in stale:
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staging / path, out / path)
        unchanged = len(generated) - len(stale)
        click.echo(f"docket-gen: {len(stale)} files written to {out}, {unchanged} unchanged")


def _add_package_markers(root: Path) -> None:
    """protoc writes no ``__init__.py``; add one to every generated package folder."""
    for folder in {p.parent for p in root.rglob("*.py")}:
        if folder != root and not (folder / "__init__.py").exists():
            (folder / "__init__.py").write_text("")
    for folder in {p.parent for p in root.rglob("__init__.py")}:
        parent = folder.parent
        while parent != root:
            (parent / "__init__.py").touch()
            parent = parent.parent


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and filecmp.cmp(a, b, shallow=False)
