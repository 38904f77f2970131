"""Merging an agent's worktree branch back into the user's checkout (``worktrees.merge``) and ``is_merged``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .worktrees import MergeResult, Workspace


async def merge_workspace(ws: Workspace, *, strategy: Literal["merge", "squash"], dry_run: bool) -> MergeResult:
    raise NotImplementedError("merge lands in the next commit")


async def merged_already(ws: Workspace) -> bool:
    raise NotImplementedError("is_merged lands in the next commit")
