"""A family for the registration tests: the real lab family plus prompts and a resource of its own (served to
clients that start a server process by tests/integration/_recipe_server.py)."""

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

    @registry.prompt()
    async def compare_groups(labels: Annotated[str, Field(description="Run labels, comma-separated.")]) -> str:
        """Compares groups of runs by label."""
        return f"Call compare_runs with the runs labelled {labels}."

    @registry.prompt()
    async def answer_review(review_id: Annotated[str, Field(description="A review set id.")]) -> str:
        """Revises the paper after a review."""
        return f"Read the reviews of {review_id} and revise the paper."

    @registry.resource("note://{name}")
    async def note(ctx: AppContext, name: str) -> str:
        """A note of the workspace's notes/ folder."""
        return (known_workspace(ctx).resolve(f"notes/{name}.txt", must_exist=True)).read_text()

    @registry.completion("topic")
    async def topics(state: object, ws: object, typed: str) -> list[str]:
        return [t for t in ("diffusion", "dropout", "grokking") if t.startswith(typed)]
