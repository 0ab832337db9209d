"""The SQLite job store: one terminal transition per job, even when changes race; recovery."""

from __future__ import annotations

import threading
import time

import pytest

from splatforge.serve.jobs import JobStore, QueueFull, result_dir


def submit(store, n=1, **kw):
    opts = dict(webhook=None, execution_timeout_ms=None, ttl_ms=None, retention_s=60.0, max_queue=100)
    opts.update(kw)
    return [store.submit({"image": "x"}, **opts) for _ in range(n)]


def test_claim_takes_jobs_in_submission_order(tmp_path):
    store = JobStore(tmp_path / "j.sqlite3")
    ids = submit(store, 3)
    assert [store.claim("w").id for _ in range(3)] == ids
    assert store.claim("w") is None


def test_racing_terminal_transitions_yield_exactly_one(tmp_path):
    store = JobStore(tmp_path / "j.sqlite3")
    ids = submit(store, 40)
    for _ in ids:
        store.claim("w")
    wins = []

    def racer(status):
        for job_id in ids:
            if store.finish(job_id, status, error="x" if status != "COMPLETED" else None,
                            from_statuses=("IN_QUEUE", "IN_PROGRESS")):
                wins.append((job_id, status))

    threads = [threading.Thread(target=racer, args=(s,)) for s in ("COMPLETED", "CANCELLED", "TIMED_OUT", "FAILED")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w[0] for w in wins) == sorted(ids)
    events = store.terminal_events()
    assert len(events) == len(ids) and sorted(e[0] for e in events) == sorted(ids)


def test_queue_bound(tmp_path):
    store = JobStore(tmp_path / "j.sqlite3")
    submit(store, 2, max_queue=2)
    with pytest.raises(QueueFull, match="queue is full"):
        submit(store, 1, max_queue=2)


def test_recovery_requeues_interrupted_jobs_then_gives_up(tmp_path):
    path = tmp_path / "j.sqlite3"
    store = JobStore(path)
    (job_id,) = submit(store)
    store.claim("w")
    store.close()
    for attempt in (1, 2):
        store = JobStore(path)  # a restart after a crash
        assert store.recover(max_attempts=3) == (1, 0)
        assert store.claim("w").attempts == attempt + 1
        store.close()
    store = JobStore(path)
    assert store.recover(max_attempts=3) == (0, 1)
    job = store.get(job_id)
    assert job.status == "FAILED" and "gave up after 3 attempts" in job.error


def test_ttl_times_out_queued_jobs_and_results_expire(tmp_path):
    store = JobStore(tmp_path / "j.sqlite3")
    (queued,) = submit(store, ttl_ms=1)
    (done,) = submit(store, retention_s=0.0)
    time.sleep(0.01)
    assert store.time_out_expired() == [(queued, "IN_QUEUE")]
    assert store.get(queued).status == "TIMED_OUT"
    job = store.claim("w")
    assert job.id == done
    assert store.finish(done, "COMPLETED", result={"format": "ply"})
    time.sleep(0.01)
    assert store.delete_expired() == [done]  # the TIMED_OUT job stays visible for its grace period
    assert store.get(done) is None and store.get(queued) is not None


def test_retry_and_unknown_ids(tmp_path):
    store = JobStore(tmp_path / "j.sqlite3")
    (job_id,) = submit(store)
    store.claim("w")
    store.finish(job_id, "FAILED", error="boom")
    assert store.retry(job_id) == "IN_QUEUE"
    assert store.counts()["retried"] == 1
    assert store.get("../../etc/passwd") is None and store.get("0" * 32) is None
    with pytest.raises(ValueError):
        result_dir(tmp_path, "../x")
