"""MLflow tracking of sweeps: the server, the run hierarchy, provenance, results, and the outbox.

    uri = ensure_tracking(store)                 # MLFLOW_TRACKING_URI, or the store's lean local server
    tracker = Tracker(store, sweep="smoke-1a2b", uri=uri)
    tracker.start(tracker.sweep_run(), tags=provenance_tags())
    row = tracker.start_row("two_stage", cfg)    # axes params, provenance tags, resolved config
    log_row_results(tracker, "two_stage", episodes_df)
    tracker.end(row); tracker.end(tracker.sweep_run()); tracker.flush()
"""

from videopolicy.tracking.outbox import FlushResult, Outbox
from videopolicy.tracking.provenance import git_state, provenance_tags
from videopolicy.tracking.results import log_report, log_row_results
from videopolicy.tracking.runs import RunRef, Tracker, flatten
from videopolicy.tracking.server import TrackingServer, ensure_tracking, healthy, local_server, stop_tracking

__all__ = ["FlushResult", "Outbox", "RunRef", "Tracker", "TrackingServer", "ensure_tracking", "flatten",
           "git_state", "healthy", "local_server", "log_report", "log_row_results", "provenance_tags",
           "stop_tracking"]
