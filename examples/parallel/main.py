"""Three independent fetches run at once, then one step merges them.

Generate the code first (from the repository root):

    docket-gen examples/parallel/protos -o examples/parallel/gen
    python examples/parallel/main.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))

from parallel import users_docket
from parallel.users_pb2 import (
    EnrichedUser,
    UserActivity,
    UserId,
    UserPreferences,
    UserProfile,
)

DELAYS = {"fetch_profile": 0.30, "fetch_preferences": 0.20, "fetch_activity": 0.25, "enrich": 0.05}


class UserSteps(users_docket.UserGraphSteps):
    """Pretends to call three services; records how many calls overlap."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0

    async def _call(self, name: str) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(DELAYS[name])
        finally:
            self.in_flight -= 1

    async def fetch_profile(self, user_id: UserId, /) -> UserProfile:
        await self._call("fetch_profile")
        return UserProfile(id=user_id.id, name="Ada Lovelace")

    async def fetch_preferences(self, user_id: UserId, /) -> UserPreferences:
        await self._call("fetch_preferences")
        return UserPreferences(language="en", newsletter=True)

    async def fetch_activity(self, user_id: UserId, /) -> UserActivity:
        await self._call("fetch_activity")
        return UserActivity(logins_last_30d=17)

    async def enrich_user(
        self,
        profile: UserProfile,
        preferences: UserPreferences,
        activity: UserActivity | None,
        /,
    ) -> EnrichedUser:
        await self._call("enrich")
        return EnrichedUser(
            id=profile.id,
            name=profile.name,
            language=preferences.language,
            logins_last_30d=activity.logins_last_30d if activity else 0,
        )


async def main() -> None:
    steps = UserSteps()
    graph = users_docket.UserGraph(steps)
    print(graph.plan.describe())
    started = time.perf_counter()
    user = await graph.run(EnrichedUser, user_id=UserId(id="u-1815"))
    wall = time.perf_counter() - started
    print()
    print(
        f"result: {user.name} ({user.id}), language={user.language}, logins={user.logins_last_30d}"
    )
    print(f"steps in flight at once: {steps.peak}")
    print(
        f"wall time {wall * 1000:.0f} ms vs {sum(DELAYS.values()) * 1000:.0f} ms "
        f"for the steps one after another"
    )


if __name__ == "__main__":
    asyncio.run(main())
