"""Reads a CodeGeneratorRequest into graph models, checking every option value on the way.

``docket_runtime.options_pb2`` is imported here, before any request is parsed:
protobuf's upb backend keeps extensions it does not know yet as unknown
fields and never promotes them later.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from docket_runtime import options_pb2
from docket_runtime.plan import (
    ENQUEUE_OPTIONS,
    RUN_OPTIONS,
    CachePolicy,
    CacheScope,
    Delivery,
    Input,
    InputKind,
    RetryPolicy,
    Step,
)

from .cache_keys import read_key
from .durations import DurationError, parse_duration
from .locations import Location, Locator
from .model import Diagnostic, FileModel, GraphModel, MessageInfo, StepModel
from .names import is_dotted_name, is_identifier, module_of, python_name, snake_case

OPTIONS_FILE = "docket_runtime/options.proto"
EMPTY = "google.protobuf.Empty"

# Descriptor field numbers used in SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_SERVICE = 4, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_OPTIONS = 2, 3, 7
_FIELD_TYPE_NAME = 6
_SERVICE_METHOD, _SERVICE_OPTIONS = 2, 3
_METHOD_NAME, _METHOD_INPUT, _METHOD_OUTPUT, _METHOD_OPTIONS = 1, 2, 3, 4
_EXT = options_pb2.DESCRIPTOR.extensions_by_name["step"].number
_SENSITIVE = options_pb2.DESCRIPTOR.extensions_by_name["sensitive"].number

_F = descriptor_pb2.FieldDescriptorProto
_SCOPES = {
    options_pb2.CachePolicy.NONE: CacheScope.NONE,
    options_pb2.CachePolicy.WORKFLOW: CacheScope.WORKFLOW,
    options_pb2.CachePolicy.GLOBAL: CacheScope.GLOBAL,
}
_DELIVERIES = {
    options_pb2.StepOptions.AT_LEAST_ONCE: Delivery.AT_LEAST_ONCE,
    options_pb2.StepOptions.AT_MOST_ONCE: Delivery.AT_MOST_ONCE,
}
# Parameters of the generated run() and enqueue() besides the graph inputs. run_batch()
# adds its own, checked for graphs with batch runs only (docket_gen.batches.BATCH_KEYWORDS).
RESERVED_KEYWORDS = frozenset({"self", "target", *RUN_OPTIONS})
ENQUEUE_KEYWORDS = frozenset(ENQUEUE_OPTIONS) - RESERVED_KEYWORDS


class Request:
    """Index of every message and service in a request, across all its files."""

    def __init__(self, request: plugin_pb2.CodeGeneratorRequest) -> None:
        self.request = request
        self.files = {f.name: f for f in request.proto_file}
        self.locators = {f.name: Locator(f) for f in request.proto_file}
        self.messages: dict[str, MessageInfo] = {}
        self.message_protos: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.message_paths: dict[str, tuple[int, ...]] = {}
        self.services: dict[str, tuple[str, int]] = {}
        for file in request.proto_file:
            prefix = f"{file.package}." if file.package else ""
            for index, message in enumerate(file.message_type):
                self._index_message(file, message, prefix, "", (_FILE_MESSAGE, index))
            for index, service in enumerate(file.service):
                self.services[prefix + service.name] = (file.name, index)

    def _index_message(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        message: descriptor_pb2.DescriptorProto,
        prefix: str,
        outer: str,
        path: tuple[int, ...],
    ) -> None:
        class_path = f"{outer}{message.name}"
        full_name = prefix + class_path
        self.messages[full_name] = MessageInfo(
            full_name=full_name,
            file=file.name,
            module=module_of(file.name),
            class_path=class_path,
            bundle=bool(message.options.Extensions[options_pb2.bundle]),
            location=self.locators[file.name].find((*path, 1)),
            sensitive=bool(message.options.Extensions[options_pb2.sensitive]),
        )
        self.message_protos[full_name] = message
        self.message_paths[full_name] = path
        for index, nested in enumerate(message.nested_type):
            self._index_message(
                file, nested, prefix, f"{class_path}.", (*path, _MESSAGE_NESTED, index)
            )

    def resolve(self, name: str, package: str, known: Container[str]) -> str | None:
        """Resolve ``name`` as protobuf scoping does: relative to ``package`` and its parents."""
        if name.startswith("."):
            return name[1:] if name[1:] in known else None
        parts = package.split(".") if package else []
        for depth in range(len(parts), -1, -1):
            candidate = ".".join([*parts[:depth], name])
            if candidate in known:
                return candidate
        return None

    def is_docket_file(self, name: str) -> bool:
        """Services of files that import the options proto are graphs."""
        file = self.files[name]
        return OPTIONS_FILE in file.dependency or OPTIONS_FILE in getattr(
            file, "option_dependency", ()
        )


def read_files(
    request: plugin_pb2.CodeGeneratorRequest,
) -> tuple[Request, dict[str, FileModel], list[Diagnostic]]:
    """Read every graph of the request: the index, every file with graphs, the option errors.

    Graphs of all files are read (a subgraph may live in a dependency); errors
    are reported for the files to generate only.
    """
    index = Request(request)
    diagnostics: list[Diagnostic] = []
    files: dict[str, FileModel] = {}
    for file in request.proto_file:
        if file.name == OPTIONS_FILE or not index.is_docket_file(file.name):
            continue
        model = FileModel(file.name)
        file_errors: list[Diagnostic] = []
        for service_index in range(len(file.service)):
            model.graphs.append(_read_graph(index, file, service_index, file_errors))
        files[file.name] = model
        if file.name in request.file_to_generate:
            diagnostics.extend(file_errors)
    return index, files, diagnostics


def all_graphs(files: Sequence[FileModel]) -> Iterator[GraphModel]:
    """Every graph of ``files``."""
    for file in files:
        yield from file.graphs


def _read_graph(
    index: Request,
    file: descriptor_pb2.FileDescriptorProto,
    service_index: int,
    errors: list[Diagnostic],
) -> GraphModel:
    service = file.service[service_index]
    locator = index.locators[file.name]
    path = (_FILE_SERVICE, service_index)
    options = service.options.Extensions[options_pb2.graph]
    option_location = locator.find((*path, _SERVICE_OPTIONS, _EXT))
    full_name = f"{file.package}.{service.name}" if file.package else service.name
    graph = GraphModel(
        name=service.name,
        full_name=full_name,
        file=file.name,
        description=options.description,
        doc=locator.comment(path),
        location=locator.find((*path, 1)),
        option_location=option_location,
    )
    keywords: dict[str, str] = {}
    for name in options.inputs:
        resolved = index.resolve(name, file.package, index.messages)
        if resolved is None:
            errors.append(
                Diagnostic(
                    option_location,
                    f"graph {service.name}: input {name!r} names no message type; "
                    "write a message name, fully qualified or relative to the package",
                )
            )
            continue
        if index.messages[resolved].bundle:
            errors.append(
                Diagnostic(
                    option_location,
                    f"graph {service.name}: input {resolved} is a bundle; "
                    "declare the message types of its fields instead",
                )
            )
            continue
        keyword = python_name(snake_case(resolved.rsplit(".", 1)[-1]))
        clash = keywords.get(keyword)
        if keyword in RESERVED_KEYWORDS | ENQUEUE_KEYWORDS or clash is not None:
            method = "enqueue()" if keyword in ENQUEUE_KEYWORDS else "run()"
            other = f"input {clash}" if clash else f"the {method} method"
            errors.append(
                Diagnostic(
                    option_location,
                    f"graph {service.name}: input {resolved} would be passed as {keyword}=, "
                    f"which {other} already uses; rename one of the messages",
                )
            )
            continue
        keywords[keyword] = resolved
        graph.inputs[resolved] = keyword
        if index.messages[resolved].sensitive:
            graph.sensitive.append(resolved)
    if options.items:
        graph.items_option = options.items
        graph.items = _read_items(index, file.package, graph, options.items, errors)
    for method_index in range(len(service.method)):
        step = _read_step(index, file, service_index, method_index, errors)
        if step is not None:
            graph.steps.append(step)
    return graph


def _read_items(
    index: Request, package: str, graph: GraphModel, name: str, errors: list[Diagnostic]
) -> str | None:
    """``(docket.graph).items``: a message type that is also one of the graph's inputs."""
    resolved = index.resolve(name, package, index.messages)
    if resolved is None:
        errors.append(
            Diagnostic(
                graph.option_location,
                f"graph {graph.name}: items {name!r} names no message type; "
                "write a message name, fully qualified or relative to the package",
            )
        )
        return None
    if resolved not in graph.inputs:
        errors.append(
            Diagnostic(
                graph.option_location,
                f"graph {graph.name}: items {resolved} is not one of the graph's inputs; "
                f'add "{name}" to (docket.graph).inputs',
            )
        )
        return None
    return resolved


def _read_step(
    index: Request,
    file: descriptor_pb2.FileDescriptorProto,
    service_index: int,
    method_index: int,
    errors: list[Diagnostic],
) -> StepModel | None:
    method = file.service[service_index].method[method_index]
    locator = index.locators[file.name]
    path = (_FILE_SERVICE, service_index, _SERVICE_METHOD, method_index)
    location = locator.find((*path, _METHOD_NAME))
    option_path = (*path, _METHOD_OPTIONS, _EXT)
    option_location = locator.find(option_path)
    if method.client_streaming or method.server_streaming:
        errors.append(
            Diagnostic(
                location, f"rpc {method.name}: a streaming rpc cannot be a step; remove `stream`"
            )
        )
        return None
    options = method.options.Extensions[options_pb2.step]
    name = options.name or method.name
    if not is_identifier(name):
        errors.append(
            Diagnostic(
                option_location,
                f"step name {name!r} of rpc {method.name} is not an identifier; "
                "use letters, digits and underscores",
            )
        )
        return None
    input_type = method.input_type.lstrip(".")
    output_type = method.output_type.lstrip(".")
    input_location = locator.find((*path, _METHOD_INPUT))
    output_location = locator.find((*path, _METHOD_OUTPUT))
    if index.messages[output_type].bundle:
        errors.append(
            Diagnostic(
                output_location,
                f"step {name} returns bundle {output_type}; a bundle groups a step's inputs "
                "and cannot be an output",
            )
        )
    inputs, input_locations = _read_inputs(index, name, input_type, input_location, errors)
    where = _OptionErrors(errors, option_location, name)
    spec = Step(
        name=name,
        method=python_name(snake_case(name)),
        output=output_type,
        inputs=inputs,
        blocking=options.blocking,
        timeout=where.duration("timeout", options.timeout),
        retry=_read_retry(options, where) if options.HasField("retry") else None,
        cache=_read_cache(options.cache, where, index, input_type, inputs),
        max_concurrency=options.max_concurrency,
        delivery=_DELIVERIES[options.delivery],
        subgraph=_read_subgraph(index, file, method.name, options, where),
        durable=options.durable,
        sensitive=options.sensitive or index.messages[output_type].sensitive,
    )
    if spec.delivery is Delivery.AT_MOST_ONCE and spec.retry is not None:
        where.error(
            "retry",
            "an AT_MOST_ONCE step never runs twice, so it cannot retry; remove the retry, or "
            "make the step idempotent (context().idempotency_key) and keep AT_LEAST_ONCE",
        )
    if spec.blocking and spec.subgraph is not None:
        where.error("blocking", "a subgraph step has no implementation to run in a thread")
    return StepModel(
        spec=spec,
        rpc=method.name,
        doc=locator.comment(path),
        location=location,
        input_locations=input_locations,
        output_location=output_location,
        option_location=option_location,
    )


def _read_inputs(
    index: Request,
    step: str,
    input_type: str,
    input_location: Location,
    errors: list[Diagnostic],
) -> tuple[tuple[Input, ...], tuple[Location, ...]]:
    info = index.messages[input_type]
    if input_type == EMPTY:
        return (), ()
    if not info.bundle:
        keyword = python_name(snake_case(info.class_path.rsplit(".", 1)[-1]))
        return (Input(keyword, input_type),), (input_location,)
    message = index.message_protos[input_type]
    locator = index.locators[info.file]
    base = index.message_paths[input_type]
    if info.sensitive:
        errors.append(
            Diagnostic(
                locator.find((*base, _MESSAGE_OPTIONS, _SENSITIVE)),
                f"bundle {input_type} (input of step {step}) is marked sensitive, but a bundle "
                "is never stored; mark the message types of its fields sensitive instead",
            )
        )
    inputs: list[Input] = []
    locations: list[Location] = []
    for field_index, field in enumerate(message.field):
        field_location = locator.find((*base, _MESSAGE_FIELD, field_index, _FIELD_TYPE_NAME))
        field_type = field.type_name.lstrip(".")
        if field.type != _F.TYPE_MESSAGE or index.message_protos[field_type].options.map_entry:
            errors.append(
                Diagnostic(
                    field_location,
                    f"field {field.name} of bundle {input_type} (input of step {step}) is not a "
                    "message; every input of a step is a message type",
                )
            )
            continue
        if index.messages[field_type].bundle:
            errors.append(
                Diagnostic(
                    field_location,
                    f"field {field.name} of bundle {input_type} is itself a bundle; "
                    "bundles do not nest",
                )
            )
            continue
        if field.HasField("oneof_index") and not field.proto3_optional:
            errors.append(
                Diagnostic(
                    field_location,
                    f"field {field.name} of bundle {input_type} is in a oneof; "
                    "mark it `optional` instead",
                )
            )
            continue
        if field.label == _F.LABEL_REPEATED:
            kind = InputKind.REPEATED
        elif field.proto3_optional or (
            field.label == _F.LABEL_OPTIONAL and index.files[info.file].syntax == "proto2"
        ):
            kind = InputKind.OPTIONAL
        else:
            kind = InputKind.REQUIRED
        inputs.append(Input(python_name(field.name), field_type, kind))
        locations.append(field_location)
    return tuple(inputs), tuple(locations)


class _OptionErrors:
    """Collects errors about one step's option values, located at the option."""

    def __init__(self, errors: list[Diagnostic], location: Location, step: str) -> None:
        self.errors = errors
        self.location = location
        self.step = step

    def error(self, option: str, message: str) -> None:
        self.errors.append(Diagnostic(self.location, f"step {self.step}: {option}: {message}"))

    def duration(self, option: str, text: str) -> float | None:
        if not text:
            return None
        try:
            return parse_duration(text)
        except DurationError as exc:
            self.error(option, str(exc))
            return None


def _read_retry(options: options_pb2.StepOptions, where: _OptionErrors) -> RetryPolicy:
    retry = options.retry
    default = RetryPolicy()
    initial = (
        where.duration("retry.initial_interval", retry.initial_interval) or default.initial_interval
    )
    maximum = where.duration("retry.maximum_interval", retry.maximum_interval)
    coefficient = retry.backoff_coefficient or default.backoff_coefficient
    if coefficient < 1:
        where.error(
            "retry.backoff_coefficient", f"{retry.backoff_coefficient:g} is below 1; use 1 or more"
        )
    if maximum is not None and maximum < initial:
        where.error(
            "retry.maximum_interval",
            f"{retry.maximum_interval!r} is shorter than initial_interval "
            f"({retry.initial_interval or '1s'})",
        )
    attempts = retry.max_attempts if retry.HasField("max_attempts") else default.max_attempts
    if attempts < 1:
        where.error(
            "retry.max_attempts",
            f"{attempts} leaves no attempt at all: it counts every attempt, the first one "
            f"included; use 1 (no retry) or more, or leave it out for the default "
            f"({default.max_attempts})",
        )
    jitter = retry.jitter if retry.HasField("jitter") else default.jitter
    if not 0 <= jitter <= 1:
        where.error("retry.jitter", f"{retry.jitter:g} is not a fraction between 0 and 1")
    for name in retry.non_retryable_errors:
        if not is_dotted_name(name):
            where.error(
                "retry.non_retryable_errors",
                f"{name!r} is not an exception class name "
                "(e.g. ValueError or acme.errors.Declined)",
            )
    return RetryPolicy(
        max_attempts=attempts,
        initial_interval=initial,
        backoff_coefficient=coefficient,
        maximum_interval=maximum if maximum is not None else 100 * initial,
        non_retryable_errors=tuple(retry.non_retryable_errors),
        jitter=jitter,
    )


def _read_cache(
    cache: options_pb2.CachePolicy,
    where: _OptionErrors,
    index: Request,
    input_type: str,
    inputs: Sequence[Input],
) -> CachePolicy:
    scope = _SCOPES[cache.scope]
    ttl = where.duration("cache.ttl", cache.ttl)
    if scope is CacheScope.NONE and (cache.ttl or cache.version):
        where.error("cache", "ttl and version need a scope: set scope to WORKFLOW or GLOBAL")
    namespace = cache.namespace
    if namespace and scope is not CacheScope.GLOBAL:
        where.error(
            "cache.namespace",
            f"only GLOBAL results are shared across graphs, and the scope is {scope.name}; "
            "set scope to GLOBAL or remove the namespace",
        )
    if any(char.isspace() or not char.isprintable() for char in namespace):
        where.error(
            "cache.namespace",
            f'{namespace!r} is not a namespace: write a name without spaces, e.g. "acme.pricing"',
        )
    key = read_key(
        index, input_type, inputs, cache.key, scope, lambda text: where.error("cache.key", text)
    )
    return CachePolicy(scope=scope, ttl=ttl, version=cache.version, namespace=namespace, key=key)


def _read_subgraph(
    index: Request,
    file: descriptor_pb2.FileDescriptorProto,
    rpc: str,
    options: options_pb2.StepOptions,
    where: _OptionErrors,
) -> str | None:
    if not options.subgraph:
        return None
    resolved = index.resolve(options.subgraph, file.package, index.services)
    if resolved is None:
        known = ", ".join(sorted(index.services)) or "none"
        where.error("subgraph", f"no graph named {options.subgraph!r} (graphs: {known})")
        return None
    service_file, _ = index.services[resolved]
    if not index.is_docket_file(service_file):
        where.error(
            "subgraph",
            f"{resolved} is not a graph: its file {service_file} does not import {OPTIONS_FILE}",
        )
        return None
    return resolved
