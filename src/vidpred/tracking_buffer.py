"""A training stage's MLflow logging that survives the tracking server going away for a while.

What MLflow offers, and why it is not enough on its own
    Every HTTP request is retried (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7, with exponential backoff,
    ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` 2: about four minutes), but the caller waits meanwhile — a training
    loop logging synchronously stops training for the whole outage — and a request that still fails raises.
    Async logging (``mlflow.log_metrics(..., synchronous=False)``) moves the wait to a thread, but a batch whose
    request failed is dropped (its future holds the exception). So vidpred adds one small piece:

:class:`LogBuffer`
    A FIFO of what a training stage logs to its MLflow run — metric batches (each value keeps the wall-clock
    time it was logged at), params, artifact files (sample PNGs and model files already written to the stage's
    output folder) — sent in order by one background thread. The training thread only appends, so it never
    waits for the server. When a send fails the item stays at the head of the queue and is retried (pauses of
    0.5 s doubling to 5 s); against an ``http(s)`` server each send is preceded by a ``GET /health`` (2 s
    timeout), so an outage is noticed, and the server's return picked up, within seconds instead of inside
    MLflow's minutes of request retries (a send caught by an outage between probe and send waits in those).
    An error MLflow reports as the caller's fault (HTTP 4xx other than 429, e.g. an invalid value) is not
    retried: the item is dropped and the error reported at :meth:`LogBuffer.close`.

The deadline
    :meth:`LogBuffer.wait` (called when training ends, before the model is logged) and :meth:`LogBuffer.close`
    (when the stage's run ends) wait until everything was delivered — or until the server has been unreachable
    for ``VIDPRED_TRACKING_DEADLINE`` seconds (default :data:`DEADLINE` = 60, assumed: "up to a minute" of
    outage, issue 15). Training never waits: an outage during training costs nothing as long as the server is
    back by the time the stage ends, or within the deadline after that. Past the deadline the buffer gives up:
    :meth:`close` raises one :class:`TrackingOutage` line (a VidpredError) saying what could not be logged
    (counts, metric names and steps), and MLflow's HTTP retries are cut to zero for the rest of the process so
    closing the run (FAILED) does not take another four minutes. The stage's outputs, checkpoints and
    ``metrics.jsonl`` (every logged value) are written before and stay.

Other knobs: MLflow's own ``MLFLOW_HTTP_REQUEST_*`` variables still govern each single request.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from vidpred.errors import VidpredError

DEADLINE = 60.0  # seconds of outage survived (assumed: issue 15's "up to a minute"); env VIDPRED_TRACKING_DEADLINE
DEADLINE_ENV = "VIDPRED_TRACKING_DEADLINE"
PAUSE_MIN, PAUSE_MAX = 0.5, 5.0  # seconds between retries of a failed send (assumed)
PROBE_TIMEOUT = 2.0  # seconds for one GET /health (assumed; loopback or in-cluster)
MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH


class TrackingOutage(VidpredError):
    """What a stage could not log to MLflow (one line)."""


def deadline_seconds() -> float:
    """``$VIDPRED_TRACKING_DEADLINE`` (seconds, > 0) or :data:`DEADLINE`."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise VidpredError(f"{DEADLINE_ENV}={raw!r}: give the seconds of tracking-server outage to wait out (> 0)")
    return value


@dataclass
class _Item:
    kind: str  # metrics | params | artifact
    payload: Any
    step: int | None = None
    keys: tuple[str, ...] = field(default_factory=tuple)


class LogBuffer:
    """Ordered, retrying MLflow logging for run ``run_id`` at ``uri`` (see the module docstring)."""

    def __init__(self, run_id: str, uri: str, stage: str = "train", deadline: float | None = None):
        import mlflow

        self.run_id, self.uri, self.stage = run_id, uri, stage
        self.deadline = deadline_seconds() if deadline is None else float(deadline)
        self._client = mlflow.MlflowClient(uri)
        self._remote = urlparse(uri).scheme in ("http", "https")
        self._items: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._trying_since: float | None = None  # first attempt (or failed probe) for the head item
        self._last_error = ""
        self._gave_up = False
        self._refused: list[str] = []  # items MLflow rejected (not retried)
        self._not_logged: list[str] = []  # things the stage skipped because the server was gone (e.g. "the model")
        self.sent = 0
        self._thread = threading.Thread(target=self._work, name=f"vidpred-tracking-{stage}", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------------------------- producer side

    def metrics(self, values: Mapping[str, float], step: int | None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, int(step or 0)) for k, v in values.items()]
        for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
            part = batch[i:i + MAX_METRICS_PER_BATCH]
            self._put(_Item("metrics", part, step, tuple(m.key for m in part)))

    def params(self, values: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self._put(_Item("params", [Param(k, str(v)) for k, v in values.items()], keys=tuple(values)))

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._put(_Item("artifact", (str(path), artifact_path), keys=(Path(path).name,)))

    def not_logged(self, what: str) -> None:
        """Record something the stage did not try to log because the server was gone (named at close)."""
        self._not_logged.append(what)

    @property
    def gave_up(self) -> bool:
        return self._gave_up

    def _put(self, item: _Item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    # -------------------------------------------------------------------------------- waiting

    def wait(self) -> bool:
        """Wait until everything queued was delivered (True) or the server stayed unreachable past the
        deadline (False: the buffer gives up; later items are kept only for the report)."""
        with self._cond:
            while self._items and not self._gave_up:
                since = self._trying_since
                if since is not None and time.monotonic() - since > self.deadline:
                    self._give_up()
                    break
                self._cond.wait(0.25)
            return not self._items and not self._gave_up

    def close(self, raise_errors: bool = True) -> None:
        """:meth:`wait`, stop the thread, and raise one :class:`TrackingOutage` line if anything was not logged."""
        self.wait()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=PROBE_TIMEOUT + 1.0)
        message = self.problem()
        if message and raise_errors:
            raise TrackingOutage(message)

    def problem(self) -> str | None:
        """One line saying what could not be logged, or None."""
        with self._cond:
            pending = list(self._items)
        if not pending and not self._refused and not self._not_logged:
            return None
        parts = []
        if pending:
            values = sum(len(i.payload) for i in pending if i.kind == "metrics")
            steps = [i.step for i in pending if i.kind == "metrics" and i.step is not None]
            names = sorted({k for i in pending if i.kind == "metrics" for k in i.keys})
            if values:
                shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
                parts.append(f"{values} metric values ({shown}; steps {min(steps)}–{max(steps)})" if steps
                             else f"{values} metric values ({shown})")
            files = [k for i in pending if i.kind == "artifact" for k in i.keys]
            if files:
                more = ", …" if len(files) > 3 else ""
                parts.append(f"{len(files)} artifact file(s) ({', '.join(files[:3])}{more})")
            params = sum(len(i.keys) for i in pending if i.kind == "params")
            if params:
                parts.append(f"{params} param(s)")
        parts += self._not_logged
        lost = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)
        if self._gave_up:
            last = f"; last error: {self._last_error}" if self._last_error else ""
            head = (f"{self.stage}: the MLflow tracking server at {self.uri} was unreachable for more than "
                    f"{self.deadline:g} s ({DEADLINE_ENV}{last})")
            tail = "; the stage's outputs, checkpoints and metrics.jsonl are kept"
            return f"{head}: {lost or 'nothing else'} could not be logged to MLflow run {self.run_id}{tail}"
        refused = "; ".join(self._refused[:3])
        return f"{self.stage}: MLflow run {self.run_id} refused what the stage logged: {refused}" + (
            f"; also not logged: {lost}" if lost else "")

    def _give_up(self) -> None:
        """Past the deadline: stop sending; cut MLflow's request retries so closing the run fails fast."""
        self._gave_up = True
        self._stop.set()
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
        self._cond.notify_all()

    # -------------------------------------------------------------------------------- the sender thread

    def _work(self) -> None:
        pause = PAUSE_MIN
        while True:
            with self._cond:
                while not self._items and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set() and (self._gave_up or not self._items):
                    return
                item = self._items[0]
                if self._trying_since is None:
                    self._trying_since = time.monotonic()
            try:
                if self._remote:
                    self._probe()
                self._send(item)
            except Exception as exc:  # noqa: BLE001 — every failure is either retried or reported at close
                from vidpred.tracking import error_text

                if _refused(exc):
                    with self._cond:
                        self._refused.append(f"{item.kind} {', '.join(item.keys[:3])}: {error_text(exc)[:300]}")
                        self._pop()
                    continue
                with self._cond:
                    self._last_error = error_text(exc)[:200]
                if self._stop.wait(pause):
                    if self._gave_up or not self._items:
                        return
                pause = min(pause * 2, PAUSE_MAX)
                continue
            pause = PAUSE_MIN
            with self._cond:
                self.sent += 1
                self._pop()

    def _pop(self) -> None:
        self._items.popleft()
        self._trying_since = None
        self._cond.notify_all()

    def _probe(self) -> None:
        import requests

        resp = requests.get(self.uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT)
        if resp.status_code != 200:
            raise OSError(f"/health answered HTTP {resp.status_code}")

    def _send(self, item: _Item) -> None:
        if item.kind == "metrics":
            self._client.log_batch(self.run_id, metrics=item.payload, synchronous=True)
        elif item.kind == "params":
            self._client.log_batch(self.run_id, params=item.payload, synchronous=True)
        else:
            path, artifact_path = item.payload
            self._client.log_artifact(self.run_id, path, artifact_path=artifact_path)


def _refused(exc: BaseException) -> bool:
    """MLflow said the request itself is wrong (HTTP 4xx other than 429): retrying cannot help."""
    code = getattr(exc, "get_http_status_code", None)
    try:
        status = int(code()) if callable(code) else 0
    except Exception:  # noqa: BLE001
        return False
    return 400 <= status < 500 and status != 429


__all__ = ["LogBuffer", "TrackingOutage", "deadline_seconds", "DEADLINE", "DEADLINE_ENV"]
