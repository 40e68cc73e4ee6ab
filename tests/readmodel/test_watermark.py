"""The watermark: the position up to which every write is stored and returned."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from homeserver.readmodel.positions import Watermark


class Gate:
    """A write that returns `positions` once opened (or fails)."""

    def __init__(self, watermark: Watermark, positions: list[int]) -> None:
        self.watermark = watermark
        self.positions = positions
        self.opened = trio.Event()
        self.fail = False
        self.done = trio.Event()

    async def write(self) -> list[int]:
        await self.opened.wait()
        if self.fail:
            raise RuntimeError("the store went away")
        return self.positions

    async def run(self) -> None:
        try:
            await self.watermark.track(self.write, lambda p: p)
        except RuntimeError:
            pass
        finally:
            self.done.set()

    async def finish(self) -> None:
        self.opened.set()
        await self.done.wait()


async def test_unknown_until_started() -> None:
    watermark = Watermark()
    assert watermark.safe() is None
    watermark.start_at(10)
    assert watermark.safe() == 10


async def test_a_write_returning_first_does_not_pass_one_still_in_flight() -> None:
    watermark = Watermark()
    watermark.start_at(10)
    first, second = Gate(watermark, [11]), Gate(watermark, [12])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run)
        nursery.start_soon(second.run)
        await trio.testing.wait_all_tasks_blocked()
        await second.finish()
        assert watermark.safe() == 10  # 11 may be stored, not yet returned
        await first.finish()
        assert watermark.safe() == 12


async def test_a_write_started_later_is_above_everything_returned() -> None:
    watermark = Watermark()
    watermark.start_at(10)
    first = Gate(watermark, [11])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run)
        await first.finish()
        later = Gate(watermark, [12])
        nursery.start_soon(later.run)
        await trio.testing.wait_all_tasks_blocked()
        assert watermark.safe() == 11  # the later write's positions will be above 11
        await later.finish()
    assert watermark.safe() == 12


@pytest.mark.parametrize("then_positions", [True, False])
async def test_a_failed_write_holds_the_mark_until_a_later_write_takes_positions(
    then_positions: bool,
) -> None:
    watermark = Watermark()
    watermark.start_at(10)
    failed = Gate(watermark, [11])
    failed.fail = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(failed.run)
        await failed.finish()
        assert watermark.safe() == 10
        assert watermark.certain_from > 10**18  # in doubt
        later = Gate(watermark, [12] if then_positions else [])
        nursery.start_soon(later.run)
        await later.finish()
    if then_positions:
        assert watermark.safe() == 12
        assert watermark.certain_from == 12
    else:
        # A write that took no position says nothing about the failed one.
        assert watermark.safe() == 10
        assert watermark.certain_from > 10**18
