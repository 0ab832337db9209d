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
    assert store.time_out_expired() == [(queued, None)]  # no worker to stop
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


class HookedStore(JobStore):
    """A JobStore that calls `after_commit()` after each of its transactions commits: the moment at
    which another worker, with its own connection, may act between two of them."""

    after_commit = None

    def _tx(self):
        tx, store = super()._tx(), self

        class _Hooked:
            def __enter__(self):
                return tx.__enter__()

            def __exit__(self, *exc):
                tx.__exit__(*exc)
                hook, store.after_commit = store.after_commit, None  # once
                if hook is not None and exc[0] is None:
                    hook()

        return _Hooked()


def test_a_requeued_job_that_another_worker_claims_is_not_failed_under_it(tmp_path):
    path = tmp_path / "j.sqlite3"
    a, b = HookedStore(path), JobStore(path)  # two workers with their own connections: only SQLite orders them
    (job_id,) = submit(a)
    assert a.claim("worker-a").id == job_id
    claimed = []
    a.after_commit = lambda: claimed.append(b.claim("worker-b"))  # in between, if there is a between
    assert a.requeue_or_fail(job_id, 3, "worker-a died", worker_id="worker-a") == "IN_QUEUE"
    assert [j.id for j in claimed if j] == [job_id]
    job = b.get(job_id)
    assert (job.status, job.worker_id, job.attempts) == ("IN_PROGRESS", "worker-b", 2)
    assert a.terminal_events() == []
    # worker-a, late, cannot requeue, fail or finish worker-b's run.
    assert a.requeue_or_fail(job_id, 1, "worker-a died", worker_id="worker-a") == "IN_PROGRESS"
    assert not a.finish(job_id, "COMPLETED", result={"format": "ply"}, worker_id="worker-a")
    assert b.get(job_id).status == "IN_PROGRESS" and a.terminal_events() == []
    assert b.finish(job_id, "COMPLETED", result={"format": "ply"}, worker_id="worker-b")
    assert a.terminal_events() == [(job_id, "COMPLETED")]


def test_requeue_or_fail_fails_on_the_last_attempt_in_one_step(tmp_path):
    path = tmp_path / "j.sqlite3"
    a, b = HookedStore(path), JobStore(path)
    (job_id,) = submit(a)
    a.claim("worker-a")
    a.after_commit = lambda: b.claim("worker-b")
    assert a.requeue_or_fail(job_id, 1, "worker-a died", worker_id="worker-a") == "FAILED"
    job = b.get(job_id)
    assert job.status == "FAILED" and job.error == "worker-a died; gave up after 1 attempts"
    assert b.terminal_events() == [(job_id, "FAILED")]


def test_cancel_tells_which_worker_runs_the_job(tmp_path):
    store = JobStore(tmp_path / "j.sqlite3")
    running, done, queued = submit(store, 3)
    store.claim("worker-a")
    store.claim("worker-b")
    store.finish(done, "COMPLETED", result={"format": "ply"})
    store.cancel(queued)
    assert store.cancel(queued) == ("CANCELLED", None)  # already terminal: unchanged, no worker to stop
    assert store.get(queued).status == "CANCELLED"
    assert store.cancel(running) == ("CANCELLED", "worker-a")
    assert store.cancel(done) == ("COMPLETED", None)
    assert store.cancel("0" * 32) is None
    assert sorted(store.terminal_events()) == sorted([(queued, "CANCELLED"), (running, "CANCELLED"),
                                                      (done, "COMPLETED")])
