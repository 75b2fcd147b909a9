"""The generator's graph model: what the reader builds and the checks and renderer use."""

from __future__ import annotations

from dataclasses import dataclass, field

from docket_runtime._deps import needs_of
from docket_runtime.plan import Step, Target

from .locations import Location


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One error in a proto file, printed as ``file:line:col: message``."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class MessageInfo:
    """A message type of the request, with where its generated class lives."""

    full_name: str
    file: str
    module: str
    class_path: str
    bundle: bool
    location: Location
    sensitive: bool = False


@dataclass
class StepModel:
    """One rpc read as a step: its runtime spec plus what the checks need to point at."""

    spec: Step
    rpc: str
    doc: str
    location: Location
    input_locations: tuple[Location, ...]
    output_location: Location
    option_location: Location


@dataclass
class GraphModel:
    """One service read as a graph.

    ``inputs`` maps each declared input type to the keyword of the generated
    ``run`` method; the steps' ``needs`` and the ``targets`` are filled by the
    planner once the wiring is valid.
    ``items_option`` is ``(docket.graph).items`` as written and ``items`` what it
    resolves to; ``item_type`` is the item type of batch runs once the batch
    roles are checked (declared or inferred), ``None`` without batch entry points.
    ``sensitive`` lists the declared inputs whose message type is marked sensitive.
    """

    name: str
    full_name: str
    file: str
    description: str
    doc: str
    location: Location
    option_location: Location
    inputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepModel] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    items_option: str = ""
    items: str | None = None
    item_type: str | None = None
    sensitive: list[str] = field(default_factory=list)

    def producers(self) -> dict[str, StepModel]:
        """Output type -> the (first) step that produces it."""
        producers: dict[str, StepModel] = {}
        for step in self.steps:
            producers.setdefault(step.spec.output, step)
        return producers

    def needs(self) -> dict[str, tuple[str, ...]]:
        """Step name -> the steps it needs, as the planner wrote them (none before)."""
        return needs_of(step.spec for step in self.steps)


@dataclass
class FileModel:
    """A proto file to generate, with its graphs."""

    name: str
    graphs: list[GraphModel] = field(default_factory=list)
