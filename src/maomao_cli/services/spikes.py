"""Spikes: detect after each run, store once in etcd, list, recompute, follow, notify.

Listing and following read etcd only; scipy is imported by the detector module alone,
when something is detected.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .. import validation
from ..config import Settings, SpikeSettings
from ..errors import BadInput, NotFound
from ..frozen import frozen
from ..keys import Keys
from ..models import Run, Spike, Tool
from ..store.base import Store
from . import datawarnings
from .feeds import Feed
from .records import load, load_all

if TYPE_CHECKING:
    from ..detect.detector import Detection, DetectorParams, Verdict
    from ..detect.series import SeriesRead

log = logging.getLogger("maomao.spikes")


@frozen
class Recomputed:
    found: list[Spike]
    new: list[str]  # sortables found now but not stored
    gone: list[str]  # stored but not found now


class SpikeService:
    def __init__(self, store: Store, keys: Keys, settings: Settings, member: str) -> None:
        self.store = store
        self.keys = keys
        self.settings = settings
        self.member = member
        self._warned: set[str] = set()  # runs whose data warning was notified
        # Each tool's data directory after its last check here: what the next run wrote.
        self._snapshots: dict[str, datawarnings.Snapshot] = {}
        # Told of each spike stored here (the worker's metrics count them).
        self.on_stored: Callable[[Spike], None] | None = None

    def params(
        self,
        tool: Tool | None = None,
        *,
        method: str | None = None,
        sensitivity: float | None = None,
        seed_threshold: float | None = None,
    ) -> DetectorParams:
        return detector_params(
            self.settings.spikes,
            tool,
            method=method,
            sensitivity=sensitivity,
            seed_threshold=seed_threshold,
        )

    def explain(self, tool: Tool, data_dir: Path, params: DetectorParams) -> Verdict | None:
        """Why the newest point of the tool's local series is or is not a spike; None
        when this member holds no series of it."""
        from ..detect.detector import explain
        from ..detect.series import SeriesError

        try:
            series = self._series(data_dir)
        except SeriesError:
            return None
        return explain(series.points, params)

    def _spike(self, tool: str, d: Detection, params: DetectorParams, run_id: str | None) -> Spike:
        return Spike(
            tool=tool,
            sortable=d.sortable,
            value=d.value,
            baseline=d.baseline,
            deviation=d.deviation,
            deviation_pct=d.deviation_pct,
            score=d.score,
            direction=d.direction,
            method=params.method,
            rule=d.rule,
            run_id=run_id,
            member=self.member,
            found=time.time(),
        )

    # After a run -------------------------------------------------------------

    def _series(self, data_dir: Path) -> SeriesRead:
        """The control series, read without following a link below the importdir."""
        from ..detect.series import read_control_dir

        importdir = self.settings.data.import_path.resolve()
        root = importdir if importdir in data_dir.parents else data_dir
        return read_control_dir(data_dir, root)

    @staticmethod
    def prepare() -> None:
        """Import the detector (not numpy or scipy: those only when something is seen)."""
        from ..detect import detector  # noqa: F401

    def check_after_run(self, tool: Tool, run: Run, data_dir: Path) -> Run | None:
        """The after-run hook: if the newest control point is a spike, store it once; if
        the run's data looks wrong (datawarnings.py), record and notify a data warning."""
        from ..detect.detector import detect_latest
        from ..detect.series import SeriesError

        try:
            series = self._series(data_dir)
        except SeriesError as exc:
            log.warning("spike check for %s skipped: %s", tool.name, exc)
            return None
        found, self._snapshots[tool.name] = datawarnings.assess(
            data_dir, series, run.started, self._snapshots.get(tool.name)
        )
        for name, reason in found.skipped:
            log.warning("spike check for %s: skipped %s (%s)", tool.name, name, reason)
        updated = None
        if found.warning is not None:
            updated = self._warn(tool, run, found.warning)
        params = self.params(tool)
        latest = detect_latest(series.points, params)
        if latest is not None:
            self._store(self._spike(tool.name, latest, params, run.id))
        return updated

    def _store(self, spike: Spike) -> None:
        key = self.keys.spike(spike.tool, spike.sortable, spike.member)
        if self.store.create(key, spike.to_json()):
            log.info(
                "spike found in %s at %s on %s: %s %.4g (baseline %.4g, score %.1f, %s rule)",
                spike.tool,
                spike.sortable,
                spike.member,
                spike.direction,
                spike.value,
                spike.baseline,
                spike.score,
                spike.rule,
            )
            if self.on_stored is not None:
                self.on_stored(spike)
            self.notify(spike)

    def _warn(self, tool: Tool, run: Run, warning: datawarnings.DataWarning) -> Run:
        """Record the data warning on the run and notify it, once per run."""
        log.warning("data warning for %s run %s: %s", tool.name, run.id, warning.line)
        if run.id not in self._warned:
            self._warned.add(run.id)
            self._deliver(
                {
                    "kind": warning.kind,
                    "tool": tool.name,
                    "run_id": run.id,
                    "member": self.member,
                    "message": warning.message,
                    "found": time.time(),
                }
            )
        note = warning.line
        return replace(
            run,
            data_warning=warning.kind,
            warning=f"{run.warning}; {note}" if run.warning else note,
        )

    def notify(self, spike: Spike) -> None:
        """Run the configured hooks for a spike (kind "spike")."""
        self._deliver({"kind": "spike", **spike.to_dict()})

    def notify_event(self, event: dict[str, object]) -> None:
        """Run the configured hooks for another event (a divergence: services/audit.py)."""
        self._deliver(event)

    def _deliver(self, event: dict[str, object]) -> None:
        """Run the configured hooks in the background, bounded by a timeout, never blocking."""
        cfg = self.settings.spikes
        if not cfg.hook_command and not cfg.webhook_url:
            return
        payload = json.dumps(event).encode()

        def deliver() -> None:
            if cfg.hook_command:
                try:
                    subprocess.run(
                        cfg.hook_command,
                        shell=True,
                        input=payload,
                        timeout=cfg.hook_timeout,
                        check=True,
                        capture_output=True,
                    )
                except (subprocess.SubprocessError, OSError) as exc:
                    log.warning("spike hook command failed: %s", str(exc).splitlines()[0][:200])
            if cfg.webhook_url:
                import urllib.request  # http.client: a third of a read command's start-up

                request = urllib.request.Request(
                    cfg.webhook_url,
                    data=payload,
                    method="POST",
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=cfg.hook_timeout):
                        pass
                except (OSError, ValueError) as exc:
                    log.warning("spike webhook %s failed: %s", cfg.webhook_url, exc)

        threading.Thread(target=deliver, name="spike-hook", daemon=True).start()

    # Reading -----------------------------------------------------------------

    def stored(
        self, tool: str | None = None, since: str | None = None, member: str | None = None
    ) -> list[Spike]:
        """Stored spikes, newest first; those of one member with `member` (keys of
        either layout: <sortable> from before, <sortable>@<member>)."""
        prefix = self.keys.spikes(tool) if tool else self.keys.spikes()
        spikes = load_all(self.store, prefix, Spike)
        if since:
            spikes = [s for s in spikes if s.sortable >= since]
        if member is not None:
            spikes = [s for s in spikes if s.member == member]
        return sorted(spikes, key=lambda s: (s.sortable, s.tool, s.member or ""), reverse=True)

    def recompute(
        self, tool: Tool, data_dir: Path, params: DetectorParams
    ) -> tuple[Recomputed, list[tuple[str, str]]]:
        from ..detect.detector import detect
        from ..detect.series import SeriesError

        try:
            series = self._series(data_dir)
        except SeriesError as exc:
            raise BadInput(str(exc)) from None
        found = [self._spike(tool.name, d, params, None) for d in detect(series.points, params)]
        # This member's series: what it stored (or a record from before members were kept).
        stored = {s.sortable for s in self.stored(tool.name) if s.member in (None, self.member)}
        now = {s.sortable for s in found}
        result = Recomputed(
            sorted(found, key=lambda s: s.sortable, reverse=True),
            sorted(now - stored),
            sorted(stored - now),
        )
        return result, series.skipped

    def get(self, tool: str, sortable: str) -> Spike:
        """The stored spike of tool at sortable (its key under <prefix>/spikes/<tool>/:
        <sortable>@<member>, or <sortable> for a record from before)."""
        validation.name(tool, "tool name")
        if not sortable or "/" in sortable or sortable in (".", ".."):
            raise BadInput(f"invalid spike key {sortable!r}")
        spike = load(self.store, self.keys.spike(tool, sortable), Spike)
        if spike is None:
            raise NotFound(f"no spike {sortable!r} for tool {tool!r}", hint="see GET /v1/spikes")
        return spike

    def feed(
        self,
        tool: str | None = None,
        *,
        start_revision: int | None = None,
        logger: logging.Logger | None = None,
    ) -> Feed[Spike]:
        """Spikes with their etcd revisions as they are stored, from start_revision (or
        from now); the watch is open when this returns (Unavailable is raised here).
        Unreadable records are reported on logger (default: this module's)."""
        prefix = self.keys.spikes(tool) if tool else self.keys.spikes()
        return Feed(self.store, prefix, Spike, logger or log, start_revision=start_revision)

    def follow(self, tool: str | None = None) -> Generator[Spike, None, None]:
        """New spikes as they are stored (an etcd watch, across reconnections: see
        services/feeds.py), until interrupted. The watch is open when this returns, so a
        spike stored after the call is never missed."""
        feed = self.feed(tool)

        def spikes() -> Generator[Spike, None, None]:
            try:
                for _, spike in feed:
                    yield spike
            finally:
                feed.cancel()

        return spikes()


T = TypeVar("T")


def _first(*values: T | None) -> T:
    """The first value that is set (the last is always set: the config's)."""
    return next(value for value in values if value is not None)


def detector_params(
    cfg: SpikeSettings,
    tool: Tool | None = None,
    *,
    method: str | None = None,
    sensitivity: float | None = None,
    seed_threshold: float | None = None,
) -> DetectorParams:
    """The detector's settings: the options given, else the tool's, else [spikes]."""
    from ..detect.detector import DetectorParams

    registered = tool or Tool(name="-", image="-")  # a tool without settings of its own
    try:
        return DetectorParams(
            method=method or registered.spike_method or cfg.method,  # type: ignore[arg-type]
            sensitivity=_first(sensitivity, registered.sensitivity, cfg.sensitivity),
            window=cfg.window,
            min_history=_first(registered.min_history, cfg.min_history),
            seed_threshold=seed_threshold or cfg.seed_threshold,
        )
    except ValueError as exc:
        raise BadInput(f"invalid detector setting: {exc}") from None


@frozen
class PathDetection:
    found: list[Detection]
    skipped: list[tuple[str, str]]
    verdict: Verdict  # on the newest point


def describe(verdict: Verdict) -> str:
    """The verdict as one line, for a note."""
    if verdict.rule == "none" or verdict.score is None or verdict.threshold is None:
        return f"{verdict.points} points; {verdict.reason}"
    return (
        f"{verdict.points} points; the newest was checked by the {verdict.rule} rule: "
        f"score {verdict.score:.3g} against a threshold of {verdict.threshold:.3g} "
        f"({verdict.reason})"
    )


def detect_points(path: Path, *, is_dir: bool, params: DetectorParams) -> PathDetection:
    """Detect over a CSV file (timestamp,value) or a folder of control files."""
    from ..detect.detector import detect, explain
    from ..detect.series import SeriesError, read_control_dir, read_csv_series

    try:
        series = read_control_dir(path) if is_dir else read_csv_series(path)
    except SeriesError as exc:
        raise BadInput(str(exc)) from None
    return PathDetection(
        detect(series.points, params), series.skipped, explain(series.points, params)
    )
