"""The request profile's bookkeeping (`benchmarks.request_profile`): a sampled stack is put down
to its innermost stage, and the inference thread's waits for work are left out."""

from __future__ import annotations

from pathlib import Path

from benchmarks.request_profile import OTHER, read_samples, stage_of

THREAD = "Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982)"
WAITING = f"{THREAD};_worker (concurrent/futures/thread.py:81)"
SESSION = (
    f"{THREAD};_worker (concurrent/futures/thread.py:81);_WorkItem.run (concurrent/futures/"
    "thread.py:58);OnnxBackend.predict (service/runtime/backends.py:77);Session.run "
    "(onnxruntime/capi/onnxruntime_inference_collection.py:406)"
)
HANDOFF = (
    f"{THREAD};_worker (concurrent/futures/thread.py:81);Future.set_result "
    "(concurrent/futures/_base.py:540)"
)


def test_a_stack_belongs_to_its_innermost_stage():
    assert stage_of(SESSION.split(";")) == "session run"
    assert stage_of(HANDOFF.split(";")) == "batching hand-off"
    assert stage_of(["main (somewhere.py:1)"]) == OTHER


def test_the_inference_thread_waiting_for_work_is_not_counted(tmp_path: Path):
    raw = tmp_path / "raw.txt"
    raw.write_text(f"{WAITING} 378\n{SESSION} 111\n{HANDOFF} 4\n")
    assert read_samples(raw) == {"session run": 111, "batching hand-off": 4}
