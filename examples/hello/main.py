"""The smallest Docket graph: Name -> Greeting -> LoudGreeting.

Generate the code first (from the repository root):

    docket-gen examples/hello/protos -o examples/hello/gen
    python examples/hello/main.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

from hello import greeter_docket
from hello.greeter_pb2 import Greeting, LoudGreeting, Name


class Steps(greeter_docket.GreeterSteps):
    """One async method per rpc of the Greeter service."""

    async def greet(self, name: Name, /) -> Greeting:
        return Greeting(text=f"Hello, {name.text}!")

    async def shout(self, greeting: Greeting, /) -> LoudGreeting:
        return LoudGreeting(text=greeting.text.upper())


async def main() -> None:
    graph = greeter_docket.Greeter(Steps())
    # Ask for the type you want; Docket runs the steps that lead to it.
    greeting = await graph.run(Greeting, name=Name(text="Ada"))
    loud = await graph.run(LoudGreeting, name=Name(text="Ada"))
    print(greeting.text)
    print(loud.text)


if __name__ == "__main__":
    asyncio.run(main())
