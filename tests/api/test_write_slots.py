"""Per-process write slots: at most `write_concurrency` bundles or messages are written at once."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import anyio
import pytest

from kjerne.api.write_slots import run_write
from kjerne.config import Settings


def _request(limit: int) -> SimpleNamespace:
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=Settings(write_concurrency=limit))))


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_no_more_writes_run_at_once_than_the_slots(limit: int) -> None:
    request = _request(limit)
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def write(n: int) -> int:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return n * 2

    results: list[int] = []

    async def main() -> None:
        async def one(n: int) -> None:
            results.append(await run_write(request, write, n))  # type: ignore[arg-type]

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(one, n)

    anyio.run(main)
    assert sorted(results) == [0, 2, 4, 6]
    assert state["most"] == limit


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJERNE_WRITE_CONCURRENCY", "3")
    assert Settings.from_env().write_concurrency == 3
    monkeypatch.delenv("KJERNE_WRITE_CONCURRENCY")
    assert Settings.from_env().write_concurrency == 2
