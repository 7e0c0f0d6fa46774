"""The worker runtime: consumes a service queue, runs handlers, publishes events.

One delivery's way through it, in order:

    consumer.py         takes deliveries from the service queue within the concurrency limit
    runner.py           one delivery end to end, and the at-least-once rules it keeps:
      intake.py           what the delivery is: a task this worker runs, or one to park
      ledger.py           was this attempt finished before, or its job cancelled (Redis)
      attempt.py          one run of the handler, and what came of it (Outcome or Failure)
        late_running.py     when a handler with track_started=False still announces `running`
      forwarding.py       where it goes when it does not finish here: next attempt, dead letter
      event_publisher.py  its events and the reply to its caller
      settle.py           what became of it decides ack, requeue or reject; one settle()

Beside the pipeline: executions.py (what runs now, its time limits, how to stop it),
cancellations.py (cancel broadcasts), replies.py (ctx.call_service), child_jobs.py (ctx.submit_job),
heartbeat.py, broker.py (connecting, confirmed publish), bounded_map.py; app.py wires them and runs a Worker.
"""

from workers.runtime.app import WorkerRuntime, run_worker

__all__ = ["WorkerRuntime", "run_worker"]
