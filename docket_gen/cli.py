"""docket-gen: compile proto folders into an importable package of typed modules."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path, PurePosixPath

import click
from google.protobuf import descriptor_pb2

from . import gencode
from .fingerprint import inputs_digest
from .output import MANIFEST, ManifestError, OutputPlan, plan_output, unchanged_since
from .prefix import add_prefix, check_prefix, module_name
from .protoc import collect_protos, import_roots, run_protoc, user_path
from .reader import OPTIONS_FILE
from .resources import options_include_dir


def _print_include_dir(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(options_include_dir())
        ctx.exit()


def _min_protobuf(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> gencode.Version:
    if value is None:
        return gencode.RUNTIME_FLOOR
    try:
        return gencode.parse_version(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


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
    help="Folder to write the generated package tree into.",
)
@click.option(
    "-I",
    "--include",
    "includes",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Extra import root for protos that are imported but not generated.",
)
@click.option(
    "--import-prefix",
    metavar="PACKAGE",
    help="The package OUT is (e.g. myapp.gen for -o src/myapp/gen): generated modules "
    "import each other through it, so OUT need not be on sys.path.",
)
@click.option(
    "--min-protobuf",
    metavar="VERSION",
    callback=_min_protobuf,
    help="The oldest protobuf the services install (default: "
    f"{gencode.show(gencode.RUNTIME_FLOOR)}, docket-proto's own); warn if the generated "
    "code needs a newer one.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if OUT is not up to date.")
@click.option(
    "--include-dir",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_include_dir,
    help="Print the folder holding docket_runtime/options.proto (an import root for "
    "protoc or buf) and exit.",
)
@click.option(
    "--diagrams", is_flag=True, help="Also write <file>_docket.md: each graph as a Mermaid diagram."
)
@click.option(
    "--views",
    is_flag=True,
    help="Also write <file>_views.postgres.sql and <file>_views.sqlite.sql: typed SQL views "
    "of the kept step results (apply them with `docketctl views apply`).",
)
@click.version_option(package_name="docket-proto")
def main(
    proto_dirs: tuple[Path, ...],
    out: Path,
    includes: tuple[Path, ...],
    import_prefix: str | None,
    min_protobuf: gencode.Version,
    check: bool,
    diagrams: bool,
    views: bool,
) -> None:
    """Generate *_pb2.py, *_pb2.pyi and *_docket.py for every .proto under PROTO_DIRS.

    Docket's options proto and the well-known types are on the import path
    already. Errors are printed as file:line:col: message. OUT/.docket-manifest
    lists the files docket-gen wrote: it removes those it no longer generates
    and never replaces a file it did not write.
    """
    if import_prefix is not None:
        _check_import_prefix(import_prefix, out)
    files = [f for root in proto_dirs for f in collect_protos(root)]
    if not files:
        raise click.UsageError(f"no .proto files under {', '.join(map(str, proto_dirs))}")
    extras = [name for name, wanted in (("diagrams", diagrams), ("views", views)) if wanted]
    inputs = inputs_digest(
        import_roots(proto_dirs, includes),
        [f"import-prefix={import_prefix or ''}", f"extras={','.join(extras)}"],
    )
    package_root = import_prefix is not None
    if check:
        count = unchanged_since(out, inputs, package_root=package_root)
        if count is not None:  # nothing the output comes from has changed: no need to compile
            click.echo(f"docket-gen: {out} is up to date ({count} files)")
            return
    with tempfile.TemporaryDirectory(prefix="docket-gen-") as tmp:
        staging, scratch = Path(tmp) / "out", Path(tmp) / "bin"
        staging.mkdir()
        scratch.mkdir()
        run = run_protoc(proto_dirs, includes, files, staging, scratch, extras)
        if run.returncode != 0:
            for line in run.errors:
                click.echo(line, err=True)
            click.echo(
                f"docket-gen: {_failure(run.check_errors)}; nothing written to {out}", err=True
            )
            sys.exit(1)
        for warning in _warnings(run.files, proto_dirs, staging, min_protobuf):
            click.echo(warning, err=True)
        generated = _read_generated(staging, import_prefix)
    try:
        plan = plan_output(out, generated, package_root=package_root, inputs=inputs)
    except ManifestError as exc:
        click.echo(f"docket-gen: {exc}", err=True)
        sys.exit(1)
    if plan.conflicts:
        for path in plan.conflicts:
            click.echo(
                f"docket-gen: {out / path} exists and docket-gen did not write it (it is not "
                f"in {out / MANIFEST}); move it away or generate into another folder",
                err=True,
            )
        click.echo(f"docket-gen: nothing written to {out}", err=True)
        sys.exit(1)
    if check:
        _report_check(plan, out)
        return
    plan.apply()
    for path in plan.kept:
        click.echo(
            f"docket-gen: kept {out / path}: no .proto generates it any more, but it was "
            "edited since docket-gen wrote it; delete it if it is not needed",
            err=True,
        )
    written = len(plan.writes) + len(plan.markers)
    summary = f"docket-gen: {written} files written to {out}, {plan.unchanged} unchanged"
    if plan.removals:
        summary += f", {len(plan.removals)} removed"
    click.echo(summary)


def _check_import_prefix(prefix: str, out: Path) -> None:
    problem = check_prefix(prefix)
    if problem:
        raise click.BadParameter(f"{prefix!r}: {problem}", param_hint="'--import-prefix'")
    parts = prefix.split(".")
    if list(out.resolve().parts[-len(parts) :]) != parts:
        raise click.BadParameter(
            f"{prefix} is imported from a folder ending in {'/'.join(parts)}, "
            f"but OUT is {out}; give -o that folder",
            param_hint="'--import-prefix'",
        )


def _failure(check_errors: int) -> str:
    if check_errors:
        noun = "error" if check_errors == 1 else "errors"
        return f"{check_errors} {noun} in Docket's checks"
    return "protoc failed"


def _warnings(
    files: list[descriptor_pb2.FileDescriptorProto],
    roots: tuple[Path, ...],
    staging: Path,
    min_protobuf: gencode.Version,
) -> list[str]:
    warnings = []
    for file in files:
        imported = {*file.dependency, *getattr(file, "option_dependency", ())}
        if file.service and OPTIONS_FILE not in imported:
            warnings.append(
                f"docket-gen: warning: {user_path(file.name, roots)} has services but does not "
                f"import {OPTIONS_FILE}; no graph module generated"
            )
    sources = (p.read_text() for p in sorted(staging.rglob("*_pb2.py")))
    runtime = gencode.runtime_warning(sources, min_protobuf)
    if runtime:
        warnings.append(runtime)
    return warnings


def _read_generated(staging: Path, import_prefix: str | None) -> dict[PurePosixPath, bytes]:
    """Every file protoc wrote, by path relative to OUT; imports prefixed if asked to."""
    paths = sorted(PurePosixPath(p.relative_to(staging).as_posix()) for p in staging.rglob("*"))
    paths = [p for p in paths if (staging / p).is_file()]
    generated = {p: (staging / p).read_bytes() for p in paths}
    if import_prefix is None:
        return generated
    modules = {module_name(p) for p in paths if p.suffix == ".py"}
    return {
        p: add_prefix(content, import_prefix, modules, module_name(p))
        for p, content in generated.items()
    }


def _report_check(plan: OutputPlan, out: Path) -> None:
    for path in [*plan.writes, *plan.markers]:
        click.echo(f"stale: {out / path}", err=True)
    for path in [*plan.removals, *plan.kept]:
        click.echo(f"orphan: {out / path} (no .proto generates it any more)", err=True)
    if plan.manifest_stale and not (plan.writes or plan.markers or plan.removals or plan.kept):
        click.echo(f"stale: {out / MANIFEST}", err=True)
    if not plan.up_to_date:
        click.echo("docket-gen: generated code is out of date; run docket-gen", err=True)
        sys.exit(1)
    count = len(plan.generated) + plan.packages
    click.echo(f"docket-gen: {out} is up to date ({count} files)")
