"""protoc-gen-docket: the protoc plugin that checks graphs and writes ``<file>_docket.py``.

protoc sends a CodeGeneratorRequest on stdin and reads a CodeGeneratorResponse
from stdout. Errors in the protos go into the response's ``error`` (protoc
prints them and exits 1); only a bug of the plugin itself exits non-zero.
"""

from __future__ import annotations

import sys

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from .batches import plan_batches
from .diagrams import diagrams_path, render_diagrams
from .model import Diagnostic
from .names import docket_module_path
from .planner import check_subgraphs, plan_graph
from .reader import read_files
from .render import render_file
from .views import render_views, views_of, views_path
from .wiring import check_graph

_Response = plugin_pb2.CodeGeneratorResponse
PARAMETERS = ("diagrams", "views")
"""The plugin's parameters (``--docket_out=diagrams,views:OUT``): extra files to write."""


def empty_response() -> plugin_pb2.CodeGeneratorResponse:
    """A response with no files that declares what the plugin supports (proto3 optional
    fields, editions up to 2024): protoc refuses a plugin that does not."""
    return _Response(
        supported_features=_Response.FEATURE_PROTO3_OPTIONAL | _Response.FEATURE_SUPPORTS_EDITIONS,
        minimum_edition=descriptor_pb2.EDITION_PROTO2,
        maximum_edition=descriptor_pb2.EDITION_2024,
    )


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """The response to ``request``: generated modules, or every error found at once."""
    response = empty_response()
    parameters = {p.strip() for p in request.parameter.split(",") if p.strip()}
    unknown = sorted(parameters - set(PARAMETERS))
    if unknown:
        response.error = (
            f"unknown protoc-gen-docket parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(PARAMETERS)}"
        )
        return response
    index, files, diagnostics = read_files(request)
    wanted = set(request.file_to_generate)
    graphs = {g.full_name: g for f in files.values() for g in f.graphs}
    for file in files.values():
        for graph in file.graphs:
            errors = check_graph(graph)
            if file.name in wanted:
                diagnostics.extend(errors)
            if not errors:
                plan_graph(graph)
                batch_errors = plan_batches(graph)
                if file.name in wanted:
                    diagnostics.extend(batch_errors)
    for name in wanted & files.keys():
        for graph in files[name].graphs:
            diagnostics.extend(check_subgraphs(graphs, graph))
    if diagnostics:
        response.error = format_diagnostics(diagnostics)
        return response
    for name in request.file_to_generate:
        if name not in files or not files[name].graphs:
            continue
        file = files[name]
        response.file.add(name=docket_module_path(name), content=render_file(file, index.messages))
        if "diagrams" in parameters:
            response.file.add(name=diagrams_path(name), content=render_diagrams(file))
        views = views_of(file, index) if "views" in parameters else []
        for dialect in ("postgres", "sqlite") if views else ():
            response.file.add(
                name=views_path(name, dialect), content=render_views(file, views, dialect)
            )
    return response


def format_diagnostics(diagnostics: list[Diagnostic]) -> str:
    """One ``file:line:col: message`` line per error, sorted by place, without repeats."""
    return "\n".join(str(d) for d in sorted(set(diagnostics)))


def main() -> None:
    """Entry point of the ``protoc-gen-docket`` executable."""
    if len(sys.argv) > 1 and sys.argv[1] in ("-V", "--version"):
        from . import __version__

        print(f"protoc-gen-docket {__version__}")
        return
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()
