"""The workers' board (`service.runtime.in_flight`): each worker publishes its requests in
flight, reads whether its siblings are quiet, and takes over a dead worker's slot."""

from __future__ import annotations

import os
import time

import pytest

from service.runtime.in_flight import InFlight, InFlightBoard


def test_siblings_are_quiet_only_with_nothing_in_flight_for_a_while(tmp_path, monkeypatch):
    first, second = InFlight(InFlightBoard(tmp_path)), InFlight(InFlightBoard(tmp_path))
    try:
        assert first.other_workers_quiet() and second.other_workers_quiet()
        with first:
            assert first.count == 1
            assert first.other_workers_quiet()  # its own request does not count
            assert not second.other_workers_quiet()
        assert not second.other_workers_quiet()  # the first has only just answered
        monkeypatch.setattr("service.runtime.in_flight.OTHER_WORKERS_QUIET_S", 0.05)
        time.sleep(0.06)
        assert second.other_workers_quiet()
    finally:
        first.close()
        second.close()


def test_a_single_worker_has_no_siblings():
    in_flight = InFlight()
    with in_flight:
        assert (in_flight.count, in_flight.other_workers_quiet()) == (1, True)


def test_a_dead_workers_slot_is_taken_over_and_reset(tmp_path, monkeypatch):
    monkeypatch.setattr("service.runtime.in_flight.OTHER_WORKERS_QUIET_S", 0.0)
    survivor, dead = InFlight(InFlightBoard(tmp_path)), InFlightBoard(tmp_path)
    dead.publish(3)  # died with three requests in flight: its lock goes, its count stays
    os.close(dead._lock_fd)
    try:
        assert not survivor.other_workers_quiet()
        successor = InFlightBoard(tmp_path)
        assert successor.slot == dead.slot
        assert survivor.other_workers_quiet()
        successor.close()
    finally:
        survivor.close()


def test_boards_take_distinct_slots_until_none_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr("service.runtime.in_flight.BOARD_SLOTS", 2)
    boards = [InFlightBoard(tmp_path), InFlightBoard(tmp_path)]
    assert sorted(board.slot for board in boards) == [0, 1]
    with pytest.raises(RuntimeError, match="all 2 worker slots in .* are taken"):
        InFlightBoard(tmp_path)
    for board in boards:
        board.close()
