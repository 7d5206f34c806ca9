"""The streaming detection engine: event time, bounded lateness, deterministic.

Events are pushed in any order; the engine buffers them (a queue for those
that arrive in order, a heap for the others) and releases them in
``(ts, key_ref, arrival)`` order once the *watermark* (the largest
event time seen minus ``lateness``) has passed them. An event older than the
watermark is refused as late. Live, the intake passes its clock: the
watermark then never passes ``clock - lateness``, and an event stamped ahead
of the clock waits apart until the clock reaches it, so one bogus timestamp
cannot make honest events late. The buffer is capped
(``keyops.detect.buffer`` has these rules); every refusal carries a reason
code (``keyops.detect.refusals``). Everything after release is a pure function of
the released sequence: detector windows are aligned to multiples of
``WINDOW`` seconds of event time, sweeps and the coordination search fire at
fixed event-time boundaries, ids are derived from content. So replaying a
week of logs from a file and receiving the same events live over a week give
the same findings, and two runs over the same input give the same output.

``flush()`` releases everything and judges every open window; replay calls
it at the end of the file. The live daemon calls ``advance(now)`` every
second so that buffered events are released by wall clock even when no new
events arrive.

The engine does no I/O: findings and actions are returned, and the
lifecycle layer persists and applies them.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from heapq import heappop, heappush

from keyops.detect import buffer, concurrency, coordinated, harvesting, network, reasoning, templated, volume
from keyops.detect.config import COORDINATION_EVERY, HALF_LIFE, WINDOW, DetectorConfig
from keyops.detect.events import UsageEvent
from keyops.detect.model import ACTION_RANK, SEVERITY_NAMES, ActionRecord, CaseNotice, FindingRecord, KeyMeta, iso
from keyops.detect.policy import (
    LEARNING_CAPPED,
    LEARNING_EVIDENCE_CAP,
    MIN_FINDING_LEVEL,
    NOTIFY_LEVEL,
    combine,
    effective_levels,
    is_leak,
    level,
)
from keyops.detect.refusals import Refusal
from keyops.detect.signal import Signal
from keyops.detect.state import (
    CONCURRENCY,
    COORDINATED,
    DETECTORS,
    HARVESTING,
    INFLIGHT_MAX,
    NETWORK,
    REASONING,
    TEMPLATED,
    VOLUME,
    KeyState,
)

HOUSEKEEPING_EVERY = 3600
LIVE_WITHIN = 3600.0
#: Evidence a cluster membership adds per coordination round: the first round
#: reaches "medium", a second consecutive round "critical". A cluster must
#: persist for two rounds before its members are acted on.
CLUSTER_SIGNAL = 4.5
#: A case closes after a day without evidence; the next episode opens a new one.
CASE_QUIET = 86400.0
_LN2 = math.log(2.0)
_Item = tuple[float, str, int, UsageEvent, KeyMeta, DetectorConfig]


def case_id(subject: str, opened_at: float) -> str:
    """Deterministic case id: the same events give the same case in every run."""
    digest = hashlib.sha256(f"case:{subject}:{opened_at:.3f}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


@dataclass
class Output:
    findings: list[FindingRecord] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    notifications: list[CaseNotice] = field(default_factory=list)


class Engine:
    """One engine per process; not thread-safe (the service serialises calls)."""

    def __init__(
        self,
        *,
        lateness: float = 5.0,
        idle_hot: float = 3600.0,
        idle_cold: float = 7 * 86400.0,
        max_buffered: int = buffer.MAX_BUFFERED,
    ) -> None:
        self.lateness = lateness
        self.idle_hot = idle_hot
        self.idle_cold = idle_cold
        self.keys: dict[str, KeyState] = {}
        # Buffered events, ordered by (ts, key_ref, arrival): events that
        # arrive in that order (a replayed file, a punctual gateway) append to
        # ``_run``; only out-of-order ones pay for the heap. Release merges both.
        self._run: deque[_Item] = deque()
        self._heap: list[_Item] = []
        # Events stamped ahead of the intake's clock wait apart (live only),
        # capped at their share of ``max_buffered``; the rest is for ``_run``
        # and ``_heap`` together.
        self.max_buffered = max_buffered
        self._ahead: buffer.AheadOfClock[_Item] = buffer.AheadOfClock(buffer.ahead_cap(max_buffered))
        self._room = max_buffered - self._ahead.cap
        # The latest clock an intake passed (None: pure event time, a replay),
        # and how far ahead of it an event is buffered as usual.
        self.clock: float | None = None
        self._horizon = math.inf
        # What processing the oldest events early produced (pure event time,
        # buffer full), until the next release hands it on.
        self._early: Output | None = None
        self._due: list[tuple[int, str]] = []
        self._seq = 0
        self._max_ts = -math.inf
        self.watermark = -math.inf
        self._next_window = -1
        self._next_coordination = -1
        self._next_housekeeping = -1
        self._clusters: dict[int, str] = {}  # template skeleton -> cluster id
        self._seen: dict[str, set[str]] = {}  # cluster id -> member key ids reported
        self._announced: set[str] = set()
        self.processed = 0
        self.late = 0

    # ------------------------------------------------------------ intake --

    def push(self, event: UsageEvent, meta: KeyMeta, cfg: DetectorConfig) -> Refusal | None:
        """Buffer one event; a refusal (reason code and message) when it is
        too late or there is no room for it.

        Live, the intake gives the engine its clock first (:meth:`tick`): an
        event stamped more than ``AHEAD_SKEW`` ahead of it waits apart and
        moves nothing until the clock reaches it, and a full buffer refuses.
        Without a clock (replay), event time alone decides, and a full buffer
        is made room in by processing its oldest events early."""
        ts = event.ts
        if ts < self.watermark:
            self.late += 1
            return buffer.late(ts, self.watermark, self.lateness)
        if ts > self._horizon:
            ahead = self._ahead
            if len(ahead) >= ahead.cap:
                return buffer.ahead_full(ts, self._horizon - buffer.AHEAD_SKEW, self.max_buffered)
            self._seq += 1
            ahead.hold((ts, event.key_ref, self._seq, event, meta, cfg))
            return None
        run = self._run
        heap = self._heap
        if len(run) + len(heap) >= self._room:
            if self.clock is not None:
                return buffer.full(self.max_buffered)
            oldest = heap[0] if heap and (not run or heap[0] < run[0]) else run[0]
            early = self._early
            if early is None:
                early = self._early = Output()
            if oldest[0] > self.watermark:
                self._advance_to(oldest[0], early)
            else:
                self._drain(oldest[0], early)
            if ts < self.watermark:
                self.late += 1
                return buffer.late(ts, self.watermark, self.lateness)
        self._seq += 1
        item = (ts, event.key_ref, self._seq, event, meta, cfg)
        if not run or item > run[-1]:
            run.append(item)
        else:
            heappush(heap, item)
        if ts > self._max_ts:
            self._max_ts = ts
        return None

    def release(self, out: Output, now: float | None = None) -> None:
        """Process every buffered event the watermark has passed: the largest
        event time seen minus ``lateness``, and live (``now`` given, now or
        before) never beyond the clock minus ``lateness``."""
        if now is not None:
            self.tick(now)
        if self._early is not None:
            self._hand_on(out)
        clock = self.clock
        newest = self._max_ts if clock is None or clock > self._max_ts else clock
        self._advance_to(newest - self.lateness, out)

    def advance(self, now: float, out: Output) -> None:
        """Move the watermark by wall clock when the stream is live and quiet:
        events buffered for ``lateness`` seconds are released even if nothing
        newer arrives. A historical feed (newest event more than
        ``LIVE_WITHIN`` behind ``now``) is left to event time alone."""
        self.tick(now)
        if self._early is not None:
            self._hand_on(out)
        if self._max_ts > -math.inf and now - self._max_ts <= LIVE_WITHIN:
            self._advance_to(min(now - self.lateness, self._max_ts), out)

    def flush(self, out: Output) -> None:
        """Release everything and judge every open window (end of a replay)."""
        if self._early is not None:
            self._hand_on(out)
        self._admit(self._ahead.take_all())
        self._drain(math.inf, out)
        if self._max_ts > -math.inf:
            self.watermark = max(self.watermark, self._max_ts)
        for key_id in sorted(self.keys):
            st = self.keys[key_id]
            if st.n:
                self._close(st, out)
                st.reset_window(st.win_start + WINDOW)

    def tick(self, now: float) -> None:
        """Take the intake's wall clock (it never goes back; live only): the
        watermark stays behind it, and events it has reached leave the
        ahead-of-clock wait for the ordinary buffer. They are never late
        there: the watermark has stayed behind the clock."""
        if self.clock is None or now > self.clock:
            self.clock = now
            self._horizon = now + buffer.AHEAD_SKEW
            if len(self._ahead):
                self._admit(self._ahead.due(now + buffer.AHEAD_SKEW))

    def _admit(self, items: list[_Item]) -> None:
        """Move items (in order) from the ahead-of-clock wait to the buffer."""
        run = self._run
        for item in items:
            if not run or item > run[-1]:
                run.append(item)
            else:
                heappush(self._heap, item)
            if item[0] > self._max_ts:
                self._max_ts = item[0]

    def _hand_on(self, out: Output) -> None:
        """Append what processing the oldest events early produced to ``out``."""
        early, self._early = self._early, None
        for part in fields(Output):
            getattr(out, part.name).extend(getattr(early, part.name))

    def _advance_to(self, watermark: float, out: Output) -> None:
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        self._drain(watermark, out)
        if self._next_window >= 0 and watermark >= self._next_window:
            self._timers(watermark, out)

    def _drain(self, watermark: float, out: Output) -> None:
        """Process buffered events up to ``watermark``, smallest first."""
        run = self._run
        heap = self._heap
        process = self._process
        while True:
            if run and run[0][0] <= watermark:
                if heap and heap[0] < run[0]:
                    _ts, _, _, event, meta, cfg = heappop(heap)
                else:
                    _ts, _, _, event, meta, cfg = run.popleft()
            elif heap and heap[0][0] <= watermark:
                _ts, _, _, event, meta, cfg = heappop(heap)
            else:
                return
            process(event, meta, cfg, out)

    # ---------------------------------------------------------- per event --

    def _process(self, ev: UsageEvent, meta: KeyMeta, cfg: DetectorConfig, out: Output) -> None:
        # One unpack instead of a dozen named-tuple attribute loads: this runs per event.
        ts, _ref, ip, net, _endpoint, status, duration_ms, tokens_in, tokens_out, sketch, ua, prefix = ev
        if ts >= self._next_window:
            self._timers(ts, out)
        self.processed += 1
        key_id = meta.key_id
        st = self.keys.get(key_id)
        if st is None:
            st = self.keys[key_id] = KeyState(meta, cfg, ts)
        elif ts >= st.win_start + WINDOW:
            if st.n:
                self._close(st, out)
                st.reset_window(int(ts // WINDOW) * WINDOW)
            else:  # closed by the timer: the counters are already zero
                st.win_start = int(ts // WINDOW) * WINDOW
        n = st.n
        if n == 0:
            heappush(self._due, (st.win_start + WINDOW, key_id))
        st.n = n + 1
        if ts > st.last_ts:
            st.last_ts = ts
        minute = int(ts // 60)
        if minute != st.minute:
            st.minute = minute
            st.minute_count = 1
        else:
            st.minute_count += 1
        if st.minute_count > st.peak_minute:
            st.peak_minute = st.minute_count
        day = int(ts // 86400)
        if day != st.day:
            st.day = day
            st.day_tokens = tokens_in + tokens_out
        else:
            st.day_tokens += tokens_in + tokens_out
        if status >= 400:
            st.errors += 1
            if status == 401 or status == 403:
                return  # refused by the gateway: no model output, nothing learned
        st.tok_in += tokens_in
        st.tok_out += tokens_out
        if duration_ms and cfg.concurrency_on:
            # Requests in flight: a bounded heap of end times (per event, so inline).
            inflight = st.inflight
            while inflight and inflight[0] <= ts:
                heappop(inflight)
            heappush(inflight, ts + duration_ms / 1000.0)
            if len(inflight) > INFLIGHT_MAX:
                heappop(inflight)
            if len(inflight) > st.peak_inflight:
                st.peak_inflight = len(inflight)
        if net:
            if net != st.last_net:
                if st.last_net:
                    st.net_switch += 1
                st.see_network(net, ip, ts)
            if st.last_net_novel:
                st.novel_net += 1
            else:
                st.known_req += 1
            if st.last_net_outside:
                st.outside += 1
        if ua:
            if ua != st.last_ua:
                st.see_user_agent(ua, ts)
            if st.last_ua_novel:
                st.novel_ua += 1
        if sketch:
            st.prompts += 1
            st.remember_prompt(sketch, prefix)

    # ------------------------------------------------------------ timers --

    def _timers(self, now: float, out: Output) -> None:
        """Fire every event-time boundary up to ``now``, oldest first."""
        if self._next_window < 0:
            base = int(now // WINDOW) * WINDOW
            self._next_window = base + WINDOW
            self._next_coordination = int(now // COORDINATION_EVERY) * COORDINATION_EVERY + COORDINATION_EVERY
            self._next_housekeeping = int(now // HOUSEKEEPING_EVERY) * HOUSEKEEPING_EVERY + HOUSEKEEPING_EVERY
            return
        while self._next_window <= now:
            boundary = self._next_window
            due = self._due
            while due and due[0][0] <= boundary:
                end, key_id = heappop(due)
                st = self.keys.get(key_id)
                if st is not None and st.n and st.win_start + WINDOW == end:
                    self._close(st, out)
                    st.reset_window(end)
            if boundary >= self._next_coordination:
                self._coordinate(boundary, out)
                self._next_coordination = boundary + COORDINATION_EVERY
            if boundary >= self._next_housekeeping:
                self._housekeeping(boundary)
                self._next_housekeeping = boundary + HOUSEKEEPING_EVERY
            self._next_window = boundary + WINDOW

    def _housekeeping(self, now: float) -> None:
        for key_id in [k for k, st in self.keys.items() if now - st.last_ts > self.idle_cold]:
            del self.keys[key_id]
        for st in self.keys.values():
            if now - st.last_ts > self.idle_hot and st.skel_ring:
                st.drop_hot()

    # ---------------------------------------------------------- judging --

    def _decay(self, st: KeyState, at: float) -> None:
        dt = at - st.evidence_ts
        if dt > 0:
            st.evidence_ts = at
            ev = st.evidence
            if any(ev):
                factor = math.exp(-_LN2 * dt / HALF_LIFE)
                st.evidence = [e * factor if e > 1e-3 else 0.0 for e in ev]

    def _close(self, st: KeyState, out: Output) -> None:
        cfg = st.cfg
        at = float(st.win_start + WINDOW)
        # The quiet key (no evidence, never a prompt) is the common case: it
        # skips the calls whose result would be all zeros anyway.
        if any(st.evidence):
            self._decay(st, at)
        elif at > st.evidence_ts:
            st.evidence_ts = at
        factor = math.exp(-_LN2 * max(at - st.acc_ts, 0.0) / HALF_LIFE)
        if st.net_switch or st.acc_switch:
            st.accumulate_origin(factor)
        else:
            st.acc_req = st.acc_req * factor + st.n
        if st.prompts or st.acc_prompts:
            st.accumulate(at, factor)
        else:  # every accumulated count is bounded by acc_prompts: all are zero
            st.acc_ts = at
        vol_z = volume.jump(st)
        spend = harvesting.spend_z(st)
        fired = False
        if cfg.volume and (sig := volume.judge(st, cfg, vol_z)) is not None:
            fired = self._signal(st, VOLUME, sig)
        if cfg.concurrency_on and (sig := concurrency.judge(st, cfg)) is not None:
            fired = self._signal(st, CONCURRENCY, sig)
        if cfg.network and (st.novel_net or st.outside) and (sig := network.judge(st, cfg, vol_z, spend)) is not None:
            fired = self._signal(st, NETWORK, sig)
        if cfg.templated and st.prompts and (sig := templated.judge(st, cfg)) is not None:
            fired = self._signal(st, TEMPLATED, sig)
        if cfg.reasoning and st.prompts and (sig := reasoning.judge(st, cfg)) is not None:
            fired = self._signal(st, REASONING, sig)
        if cfg.harvesting and (sig := harvesting.judge(st, cfg, spend)) is not None:
            fired = self._signal(st, HARVESTING, sig)
        # Baselines learn from every window while the key learns, and
        # afterwards only from windows without an open finding on that
        # detector: an episode under investigation never becomes normal.
        # While learning, a window with an open finding on any detector (a
        # burst, an attack that began before the key had a history) is not
        # learned at all: it must not become the baseline it is judged by.
        open_ = st.reported
        if st.learned or max(open_) < MIN_FINDING_LEVEL:
            volume.learn(st, open_[VOLUME] > 0)
            harvesting.learn(st, open_[HARVESTING] > 0)
            if st.prompts:
                templated.learn(st, open_[TEMPLATED] > 0)
        if st.prompts:
            reasoning.learn(st, open_[REASONING] > 0)
        if fired or st.acted or st.case_sev or any(st.reported):
            self._judge(st, at, out)

    @staticmethod
    def _signal(st: KeyState, d: int, sig: Signal) -> bool:
        """Add one detector's signal for the window to the key's evidence.

        While a key learns, a character detector's evidence stays below
        ``medium``: what it says is judged against a prior, and must not be
        waiting, at full strength, for the day the key stops learning."""
        if d in LEARNING_CAPPED and not st.learned:
            st.evidence[d] = min(st.evidence[d] + sig.strength, LEARNING_EVIDENCE_CAP)
        else:
            st.evidence[d] = max(st.evidence[d] + sig.strength, sig.floor)
        st.details[d] = {"summary": sig.summary, **sig.evidence, "window_start": iso(st.win_start)}
        return True

    @staticmethod
    def _detector_finding(st: KeyState, d: int, lvl: int, at: float, cluster_id: str | None = None) -> FindingRecord:
        """One detector's finding about ``st`` at severity ``lvl``, with its latest evidence."""
        detail = st.details.get(d, {})
        return FindingRecord(
            detector=DETECTORS[d],
            key_id=st.meta.key_id,
            key_name=st.meta.name,
            severity=SEVERITY_NAMES[lvl],
            score=st.evidence[d],
            at=at,
            summary=str(detail.get("summary", "")),
            evidence=dict(detail),
            cluster_id=cluster_id,
        )

    def _judge(self, st: KeyState, at: float, out: Output, cluster_id: str | None = None) -> None:
        levels = [level(e) for e in st.evidence]
        learned = st.learned
        shown = effective_levels(levels, learned)
        meta = st.meta
        for d, lvl in enumerate(shown):
            if lvl > st.reported[d]:
                if lvl >= MIN_FINDING_LEVEL:
                    out.findings.append(
                        self._detector_finding(st, d, lvl, at, cluster_id if d == COORDINATED else None)
                    )
                st.reported[d] = lvl
            elif lvl == 0 and st.reported[d]:
                st.reported[d] = 0  # quiet again: a later episode is reported again
            if levels[d] == 0 and d in st.details:
                del st.details[d]
        severity = combine(levels, learned)
        leak = is_leak(st.evidence[NETWORK])
        if severity or leak:
            st.case_last = at
        elif st.case_sev and at - st.case_last >= CASE_QUIET:
            st.case_sev = 0  # a day without evidence closes the case; the next episode opens another
        if leak:
            action = st.cfg.leak_action
            decision = "leak"
        else:
            action = st.cfg.ladder[severity]
            decision = "extraction"
        rank = ACTION_RANK[action]
        notify_sev = max(severity, NOTIFY_LEVEL if leak else 0)
        # A cluster's members are announced by the cluster's own case, not one by one.
        if st.cluster and notify_sev >= NOTIFY_LEVEL and not leak:
            notify_sev = combine(levels, learned, without_cluster=True)
        notice_due = notify_sev >= NOTIFY_LEVEL and notify_sev > st.case_sev
        act_due = rank > st.acted and action not in ("none", "notify")
        if not notice_due and not act_due:
            return
        contributing = {DETECTORS[d]: SEVERITY_NAMES[lvl] for d, lvl in enumerate(shown) if lvl}
        if leak:
            reason = "leak: " + str(st.details.get(NETWORK, {}).get("summary", "a new origin beside the usual one"))
        else:
            reason = f"{SEVERITY_NAMES[severity]} severity from " + ", ".join(
                f"{name} ({sev})" for name, sev in contributing.items()
            )
        finding = FindingRecord(
            detector="combined",
            key_id=meta.key_id,
            key_name=meta.name,
            severity=SEVERITY_NAMES[max(severity, NOTIFY_LEVEL if leak else 0)],
            score=sum(st.evidence),
            at=at,
            summary=reason,
            evidence={
                "profile": st.cfg.name,
                "decision": decision,
                "learning": not learned,
                "levels": contributing,
                "detectors": {DETECTORS[d]: st.details[d] for d in sorted(st.details)},
            },
            cluster_id=st.cluster,
            action=action if act_due else "none",
        )
        if leak and act_due and st.reported[NETWORK] < NOTIFY_LEVEL:
            # The origin detector's own finding, even though a leak is decided
            # below the levels that record a finding on their own: the
            # decision must point at what the network detector saw.
            out.findings.append(self._detector_finding(st, NETWORK, NOTIFY_LEVEL, at))
        out.findings.append(finding)
        if notice_due:
            kind = "escalated" if st.case_sev else "opened"
            if not st.case_sev:
                st.case_id = case_id(f"key:{meta.key_id}", at)
            st.case_sev = notify_sev
            out.notifications.append(
                CaseNotice(
                    case_id=st.case_id,
                    kind=kind,
                    key_id=meta.key_id,
                    key_name=meta.name,
                    cluster_id=st.cluster,
                    severity=SEVERITY_NAMES[notify_sev],
                    at=at,
                    summary=reason,
                    action=action if act_due else "none",
                    enforcement=st.cfg.enforcement,
                    finding=finding,
                )
            )
        if not act_due:
            return
        st.acted = rank
        out.actions.append(
            ActionRecord(
                key_id=meta.key_id,
                key_name=meta.name,
                action=action,
                at=at,
                severity=finding.severity,
                reason=reason,
                enforcement=st.cfg.enforcement,
                finding=finding,
            )
        )
        if action == "rotate":
            # The material changed: whoever held the old key lost it. Start
            # over, so continued abuse has to accumulate again to go further.
            st.evidence = [0.0] * len(st.evidence)
            st.reported = [0] * len(st.reported)
            st.details = {}
            st.cusum = 0.0
            st.run_strong = 0

    def _coordinate(self, now: float, out: Output) -> None:
        for cluster in coordinated.find_clusters(self.keys.values(), now):
            known = self._clusters.get(cluster.skeleton)
            if known is None:
                # One operation often runs several task templates: a template
                # group whose keys mostly belong to a known cluster is that
                # cluster, not a new one (one case, one id).
                joined = Counter(m.cluster for m in cluster.members if m.cluster).most_common(1)
                if joined and joined[0][1] * 2 >= len(cluster.members) and joined[0][0] in self._seen:
                    cid = joined[0][0]
                else:
                    cid = coordinated.cluster_id(cluster.skeleton, now)
                    self._seen[cid] = set()
                self._clusters[cluster.skeleton] = cid
                seen = self._seen[cid]
            else:
                cid = known
                seen = self._seen[cid]
                if cid not in self._announced:
                    # Found again a round later: confirmed. One case for the
                    # whole cluster, not one per member.
                    self._announced.add(cid)
                    out.notifications.append(
                        CaseNotice(
                            case_id=case_id(f"cluster:{cid}", float(now)),
                            kind="opened",
                            key_id=None,
                            key_name=None,
                            cluster_id=cid,
                            severity="critical",
                            at=float(now),
                            summary=(
                                f"coordinated cluster confirmed: {len(cluster.members)} keys of "
                                f"{len(cluster.owners)} owners share a prompt template"
                                + (
                                    " behind changing networks"
                                    if cluster.proxied * 2 >= len(cluster.members)
                                    else " and infrastructure"
                                )
                            ),
                            action=cluster.members[0].cfg.ladder[4],
                            enforcement=cluster.members[0].cfg.enforcement,
                            members=len(cluster.members),
                        )
                    )
            ids = [m.meta.key_id for m in cluster.members]
            evidence = {
                "members": len(ids),
                "owners": len(cluster.owners),
                "keys": [m.meta.name for m in cluster.members][:200],
                "key_ids": ids[:200],
                "shared_networks": cluster.networks,
                "shared_clients": cluster.clients,
                "members_behind_changing_networks": cluster.proxied,
                "skeleton": cluster.skeleton,
                "samples": sorted({s[1] for m in cluster.members[:20] for s in m.samples})[:3],
            }
            new_members = [i for i in ids if i not in seen]
            # One finding when the cluster appears, another each time it has
            # grown by a quarter: enough to follow it, not one per member.
            if new_members and (not seen or len(ids) >= 1.25 * len(seen)):
                seen.update(new_members)
                out.findings.append(
                    FindingRecord(
                        detector="coordinated",
                        key_id=None,
                        key_name=None,
                        severity="critical",
                        score=float(len(ids)),
                        at=float(now),
                        summary=(
                            f"{len(ids)} keys of {len(cluster.owners)} owners share a prompt template and "
                            + (
                                "clients behind changing networks"
                                if cluster.proxied * 2 >= len(cluster.members)
                                else "networks and clients"
                            )
                        ),
                        evidence={**evidence, "new_members": len(new_members)},
                        cluster_id=cid,
                    )
                )
            for st in cluster.members:
                self._decay(st, float(now))
                st.cluster = cid
                st.evidence[COORDINATED] += CLUSTER_SIGNAL
                st.details[COORDINATED] = {
                    "summary": f"member of a cluster of {len(ids)} keys of {len(cluster.owners)} owners",
                    "cluster_id": cid,
                    "members": len(ids),
                    "owners": len(cluster.owners),
                    "shared_networks": cluster.networks,
                    "shared_clients": cluster.clients,
                }
                self._judge(st, float(now), out, cluster_id=cid)

    # ------------------------------------------------------------ helpers --

    def ingest_sorted(self, items: Iterable[tuple[UsageEvent, KeyMeta, DetectorConfig]], out: Output) -> None:
        """Push and release in one pass (replay of a file)."""
        for event, meta, cfg in items:
            self.push(event, meta, cfg)
            if len(self._run) + len(self._heap) > 4096:
                self.release(out)
        self.release(out)
