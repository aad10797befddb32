"""A family for the registration tests: the real lab family plus one prompt and one resource of its own."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from research_mcp.errors import BadInputError
from research_mcp.server import lab
from research_mcp.server._adapt import AppContext, Registry, known_workspace


def register(registry: Registry) -> None:
    lab.register(registry)

    @registry.prompt(title="Try a topic")
    async def try_topic(
        topic: Annotated[str, Field(description="What to study, in a few words.")],
        seeds: Annotated[int, Field(description="Seeds per configuration.")] = 3,
    ) -> str:
        """Walks the model through one experiment on a topic."""
        if topic == "nothing":
            raise BadInputError("A topic of 'nothing' cannot be studied: name what to study.")
        return f"Study {topic} with {seeds} seeds; call run_experiment."

    @registry.resource("note://{name}")
    async def note(ctx: AppContext, name: str) -> str:
        """A note of the workspace's notes/ folder."""
        return (known_workspace(ctx).resolve(f"notes/{name}.txt", must_exist=True)).read_text()

    @registry.completion("topic")
    async def topics(state: object, ws: object, typed: str) -> list[str]:
        return [t for t in ("diffusion", "dropout", "grokking") if t.startswith(typed)]
