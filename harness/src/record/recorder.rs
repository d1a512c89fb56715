//! The live recorder: per-window and whole-run HdrHistograms of latency, service time and send
//! delay per tier, with memory that stays flat however long the run.
//!
//! Memory: a window's histograms live only while the window is *open*. Once its end has passed
//! and every request scheduled in it has a result, the window is *sealed*: its histograms are
//! encoded into the record's compact form (a few hundred bytes) and their buffers are reused for
//! later windows. Live state is therefore bounded by the windows still awaiting answers (at most
//! `max_open_windows`), never by the run's length.
//!
//! Exactness: a result that arrives after its window was sealed (a straggler, or a window forced
//! shut to bound memory) is buffered and merged into the sealed histograms later. Histograms of
//! one configuration merge by adding counts, so every statistic is exactly what one histogram of
//! the same values would give.

use hdrhistogram::Histogram;
use reports::record::{Hist, HistConfig, PhaseStats, TierStats, Trust, WindowStats};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// One request's result, as the engine hands it over. Instants are durations since run start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestResult {
    /// The request's tier.
    pub tier: String,
    /// Its outcome class label (`OutcomeClass::as_str`).
    pub outcome: String,
    /// When the plan said to send it.
    pub intended: Duration,
    /// When it was actually sent.
    pub sent: Duration,
    /// When its answer (or failure) arrived.
    pub finished: Duration,
}

/// Counts so far, for progress lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Requests scheduled.
    pub offered: u64,
    /// Requests with a result.
    pub completed: u64,
    /// Scheduled requests not sent for the in-flight cap.
    pub in_flight_cap_hits: u64,
    /// Results per outcome class label.
    pub outcomes: BTreeMap<String, u64>,
    /// p95 latency so far over all tiers, ms; `None` before the first result.
    pub p95_ms: Option<f64>,
}

/// What the recorder holds in memory, to show (and test) that it stays flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Windows known (open or sealed).
    pub windows: usize,
    /// Windows whose histograms are still live.
    pub open_windows: usize,
    /// Live histograms: the open windows', the whole run's, and the empty template.
    pub live_histograms: usize,
    /// Bytes of those histograms' count arrays.
    pub live_histogram_bytes: usize,
    /// Approximate bytes of the sealed windows (encoded histograms, counters, labels).
    pub sealed_bytes: usize,
    /// Late results waiting to be merged into sealed windows.
    pub late_buffered: usize,
}

/// How many late results are buffered before they are merged into their sealed windows: large
/// enough that decoding and re-encoding a window's histograms is amortized over many results,
/// small enough (about 40 bytes each) to keep memory flat.
const LATE_FLUSH: usize = 4096;

/// A result's three values in microseconds.
#[derive(Debug, Clone, Copy)]
struct Sample {
    latency: u64,
    service: u64,
    delay: u64,
}

/// Microseconds, saturating: histograms clamp to their highest value anyway.
fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Sample {
    fn of(r: &RequestResult) -> Sample {
        // Latency from the INTENDED time: a request the harness could not send on time (because
        // the target stalled it) still waited from when a real user would have asked, so a stall
        // cannot hide behind a stalled client (coordinated omission). Saturating: an early send
        // or a clock quirk counts as zero rather than wrapping around.
        Sample {
            latency: us(r.finished.saturating_sub(r.intended)),
            service: us(r.finished.saturating_sub(r.sent)),
            delay: us(r.sent.saturating_sub(r.intended)),
        }
    }
}

/// Small integer ids for tier and outcome labels, so hot paths and buffered late results carry
/// no strings.
#[derive(Debug, Default)]
struct Names {
    list: Vec<String>,
    index: HashMap<String, usize>,
}

impl Names {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.list.push(name.to_string());
        self.index.insert(name.to_string(), self.list.len() - 1);
        self.list.len() - 1
    }

    fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// A new empty histogram, cloned from an empty template: cloning copies the counts array in
/// one block, which is far cheaper than building it (or resetting a used one) element by
/// element. Sealed windows' arrays are freed and the allocator reuses them, so memory stays
/// flat without a pool.
fn new_hist(template: &Histogram<u64>) -> Histogram<u64> {
    template.clone()
}

/// Encodes a histogram for the record.
fn encode(h: &Histogram<u64>) -> Hist {
    // Encoding into memory cannot fail: the only V2 errors are counts above i64::MAX and a
    // usize narrower than 32 bits.
    Hist::from_histogram(h).expect("encoding a histogram into memory")
}

/// One tier's live statistics.
#[derive(Debug)]
struct LiveTier {
    count: u64,
    /// Results per outcome id.
    outcomes: Vec<u64>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    delay: Histogram<u64>,
}

impl LiveTier {
    fn new(template: &Histogram<u64>) -> LiveTier {
        LiveTier {
            count: 0,
            outcomes: Vec::new(),
            latency: new_hist(template),
            service: new_hist(template),
            delay: new_hist(template),
        }
    }

    fn add(&mut self, outcome: usize, s: Sample) {
        self.count += 1;
        if self.outcomes.len() <= outcome {
            self.outcomes.resize(outcome + 1, 0);
        }
        self.outcomes[outcome] += 1;
        self.latency.saturating_record(s.latency);
        self.service.saturating_record(s.service);
        self.delay.saturating_record(s.delay);
    }

    fn hists(&self) -> [&Histogram<u64>; 3] {
        [&self.latency, &self.service, &self.delay]
    }

    fn outcome_map(&self, names: &Names) -> BTreeMap<String, u64> {
        self.outcomes
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (names.list[i].clone(), n))
            .collect()
    }

    fn stats(&self, names: &Names) -> TierStats {
        TierStats {
            count: self.count,
            outcomes: self.outcome_map(names),
            latency: encode(&self.latency),
            service_time: encode(&self.service),
            send_delay: encode(&self.delay),
        }
    }

    /// Encodes, dropping the live histograms.
    fn seal(self, names: &Names) -> TierStats {
        self.stats(names)
    }
}

/// Counters of a window (or of the run); cheap, so they stay mutable after sealing.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    offered: u64,
    sent: u64,
    completed: u64,
    in_flight_max: u64,
    cap_hits: u64,
    /// Requests intended in this window that are accounted for: a result, or a cap hit. The
    /// window may seal once this reaches `offered`.
    resolved: u64,
}

#[derive(Debug)]
enum Hists {
    /// Live statistics per tier id.
    Live(Vec<Option<LiveTier>>),
    /// Encoded statistics per tier name.
    Sealed(BTreeMap<String, TierStats>),
}

#[derive(Debug)]
struct Slot {
    c: Counters,
    hists: Hists,
}

/// A result whose window was already sealed, waiting to be merged in.
#[derive(Debug, Clone, Copy)]
struct Late {
    window: u64,
    tier: u32,
    outcome: u32,
    s: Sample,
}

/// The live recorder. Feed it every scheduled send ([`Recorder::note_offered`]), every result
/// ([`Recorder::record`]), in-flight levels and cap hits; [`Recorder::finish`] turns it into the
/// record's statistics.
#[derive(Debug)]
pub struct Recorder {
    window: Duration,
    /// An empty histogram of the run's configuration, cloned for every new live histogram.
    template: Histogram<u64>,
    settle: Duration,
    max_open: usize,
    tiers: Names,
    outcomes: Names,
    slots: BTreeMap<u64, Slot>,
    /// Windows whose histograms are live.
    open: BTreeSet<u64>,
    totals: Counters,
    total_tiers: Vec<Option<LiveTier>>,
    overall: LiveTier,
    late: Vec<Late>,
    /// The latest instant seen: "now", as far as the recorder knows.
    watermark: Duration,
    first_cap_hit: Option<Duration>,
    /// An empty histogram's encoding, for tiers without results in a window.
    empty: Hist,
}

impl Recorder {
    /// How long after a window's end it may seal, by default: sends noted slightly after their
    /// intended time (send delay) still land in their window's live histograms.
    pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);
    /// How many windows may be live at once, by default, before the oldest is sealed anyway
    /// (its stragglers are then merged in exactly, just more slowly).
    pub const DEFAULT_MAX_OPEN_WINDOWS: usize = 16;

    /// A recorder with statistics windows of `window`, the scenario's `tiers` (each appears in
    /// every window, even without traffic; other tiers are added as they show up), and
    /// histograms of `hist` (use `HistConfig::default()`: 1 µs to 1 h, 3 significant digits).
    ///
    /// # Panics
    /// If `window` is zero or `hist` is not a valid HdrHistogram configuration: both are
    /// programming errors, not input errors.
    pub fn new<I, S>(window: Duration, tiers: I, hist: HistConfig) -> Recorder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        assert!(!window.is_zero(), "recorder window must be positive");
        let empty_h = hist
            .new_histogram()
            .unwrap_or_else(|e| panic!("recorder histogram configuration {hist:?}: {e}"));
        let empty = encode(&empty_h);
        let mut names = Names::default();
        for t in tiers {
            names.id(t.as_ref());
        }
        let overall = LiveTier::new(&empty_h);
        Recorder {
            window,
            template: empty_h,
            settle: Self::DEFAULT_SETTLE,
            max_open: Self::DEFAULT_MAX_OPEN_WINDOWS,
            tiers: names,
            outcomes: Names::default(),
            slots: BTreeMap::new(),
            open: BTreeSet::new(),
            totals: Counters::default(),
            total_tiers: Vec::new(),
            overall,
            late: Vec::new(),
            watermark: Duration::ZERO,
            first_cap_hit: None,
            empty,
        }
    }

    /// Sets how long after its end a window waits before it may seal (see
    /// [`Recorder::DEFAULT_SETTLE`]).
    pub fn with_settle(mut self, settle: Duration) -> Recorder {
        self.settle = settle;
        self
    }

    /// Sets how many windows may be live at once (at least 1; see
    /// [`Recorder::DEFAULT_MAX_OPEN_WINDOWS`]). Live memory is about this many times
    /// `3 x tiers` histograms of ~190 KB each with the default configuration.
    pub fn with_max_open_windows(mut self, n: usize) -> Recorder {
        self.max_open = n.max(1);
        self
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn index(&self, at: Duration) -> u64 {
        u64::try_from(at.as_nanos() / self.window.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The slot of window `w`, created (open, with no histograms yet) on first touch.
    fn slot(&mut self, w: u64) -> &mut Slot {
        let open = &mut self.open;
        self.slots.entry(w).or_insert_with(|| {
            open.insert(w);
            Slot {
                c: Counters::default(),
                hists: Hists::Live(Vec::new()),
            }
        })
    }

    /// The end of window `w` (saturating far in the future).
    fn window_end(&self, w: u64) -> Duration {
        let ns = u128::from(w.saturating_add(1)) * self.window.as_nanos();
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn advance(&mut self, at: Duration) {
        self.watermark = self.watermark.max(at);
    }

    /// A request was scheduled (intended) at `at`. Offered counts drive the offered rate and
    /// tell the recorder how many results a window still awaits.
    pub fn note_offered(&mut self, at: Duration) {
        let w = self.index(at);
        self.slot(w).c.offered += 1;
        self.totals.offered += 1;
        self.advance(at);
        self.maybe_seal();
    }

    /// `n` requests were in flight at `at`.
    pub fn note_in_flight(&mut self, at: Duration, n: usize) {
        let n = n as u64;
        let w = self.index(at);
        let c = &mut self.slot(w).c;
        c.in_flight_max = c.in_flight_max.max(n);
        self.totals.in_flight_max = self.totals.in_flight_max.max(n);
        self.advance(at);
        self.maybe_seal();
    }

    /// The request intended at `at` was not sent because the in-flight cap was full. It will
    /// not be [`record`](Recorder::record)ed; the run is marked untrustworthy.
    pub fn note_cap_hit(&mut self, at: Duration) {
        let w = self.index(at);
        let c = &mut self.slot(w).c;
        c.cap_hits += 1;
        c.resolved += 1;
        self.totals.cap_hits += 1;
        self.first_cap_hit.get_or_insert(at);
        self.advance(at);
        self.maybe_seal();
    }

    /// Records one result: latency (finished - intended), service time (finished - sent) and
    /// send delay (sent - intended), into its tier in the window of its *intended* time and in
    /// the whole run. It counts as sent in the window of `sent` and completed in the window of
    /// `finished`.
    pub fn record(&mut self, r: &RequestResult) {
        let tier = self.tiers.id(&r.tier);
        let outcome = self.outcomes.id(&r.outcome);
        let s = Sample::of(r);
        let (ws, wf, w) = (
            self.index(r.sent),
            self.index(r.finished),
            self.index(r.intended),
        );
        self.slot(ws).c.sent += 1;
        self.slot(wf).c.completed += 1;
        self.totals.sent += 1;
        self.totals.completed += 1;

        self.slot(w).c.resolved += 1;
        // Field by field from here, so the slot, the template and the late buffer can be
        // borrowed together.
        let template = &self.template;
        let slot = self.slots.get_mut(&w).expect("created just above");
        match &mut slot.hists {
            Hists::Live(tiers) => live_tier(tiers, tier, template).add(outcome, s),
            Hists::Sealed(_) => self.late.push(Late {
                window: w,
                tier: tier as u32,
                outcome: outcome as u32,
                s,
            }),
        }
        live_tier(&mut self.total_tiers, tier, template).add(outcome, s);
        self.overall.add(outcome, s);

        if self.late.len() >= LATE_FLUSH {
            self.flush_late();
        }
        self.advance(r.finished.max(r.sent).max(r.intended));
        self.maybe_seal();
    }

    /// Seals every open window that is over and answered, then the oldest while too many are
    /// open.
    fn maybe_seal(&mut self) {
        let done: Vec<u64> = self
            .open
            .iter()
            .copied()
            .filter(|&w| {
                let end = self.window_end(w);
                let c = &self.slots[&w].c;
                end.saturating_add(self.settle) <= self.watermark && c.resolved >= c.offered
            })
            .collect();
        for w in done {
            self.seal(w);
        }
        while self.open.len() > self.max_open {
            let oldest = *self.open.iter().next().expect("open is not empty");
            self.seal(oldest);
        }
    }

    fn seal(&mut self, w: u64) {
        self.open.remove(&w);
        let Some(slot) = self.slots.get_mut(&w) else {
            return;
        };
        if let Hists::Live(tiers) = std::mem::replace(&mut slot.hists, Hists::Live(Vec::new())) {
            let mut sealed = BTreeMap::new();
            for (id, t) in tiers.into_iter().enumerate() {
                if let Some(t) = t {
                    let stats = t.seal(&self.outcomes);
                    sealed.insert(self.tiers.list[id].clone(), stats);
                }
            }
            slot.hists = Hists::Sealed(sealed);
        }
    }

    /// Merges buffered late results into their sealed windows: each affected (window, tier) is
    /// decoded, added to, and encoded once per flush.
    fn flush_late(&mut self) {
        if self.late.is_empty() {
            return;
        }
        let mut late = std::mem::take(&mut self.late);
        late.sort_by_key(|l| (l.window, l.tier));
        for group in late.chunk_by(|a, b| (a.window, a.tier) == (b.window, b.tier)) {
            let (w, tier) = (group[0].window, group[0].tier as usize);
            let name = self.tiers.list[tier].clone();
            let Some(Slot {
                hists: Hists::Sealed(sealed),
                ..
            }) = self.slots.get_mut(&w)
            else {
                unreachable!("late results are only buffered for sealed windows");
            };
            let empty = &self.empty;
            let stats = sealed.entry(name).or_insert_with(|| TierStats {
                count: 0,
                outcomes: BTreeMap::new(),
                latency: empty.clone(),
                service_time: empty.clone(),
                send_delay: empty.clone(),
            });
            // The encodings were written by this recorder, so decoding cannot fail short of
            // memory corruption.
            let decode = |h: &Hist| {
                h.decode()
                    .expect("decoding a histogram this recorder wrote")
            };
            let (mut lat, mut svc, mut del) = (
                decode(&stats.latency),
                decode(&stats.service_time),
                decode(&stats.send_delay),
            );
            for l in group {
                stats.count += 1;
                *stats
                    .outcomes
                    .entry(self.outcomes.list[l.outcome as usize].clone())
                    .or_insert(0) += 1;
                lat.saturating_record(l.s.latency);
                svc.saturating_record(l.s.service);
                del.saturating_record(l.s.delay);
            }
            stats.latency = encode(&lat);
            stats.service_time = encode(&svc);
            stats.send_delay = encode(&del);
        }
        // Keep the buffer's allocation for the next batch.
        late.clear();
        self.late = late;
    }

    /// p95 latency so far (whole run, from intended time) in ms, over one tier or all of them;
    /// `None` before the first result (or for a tier without results).
    pub fn snapshot_p95(&self, tier: Option<&str>) -> Option<f64> {
        self.snapshot_quantile_ms(tier, 0.95)
    }

    fn live_tier(&self, tier: Option<&str>) -> Option<&LiveTier> {
        match tier {
            None => Some(&self.overall),
            Some(name) => self.total_tiers.get(self.tiers.get(name)?)?.as_ref(),
        }
    }

    /// Latency quantile `q` (0..1) so far, in ms, over one tier or all; `None` without results.
    pub fn snapshot_quantile_ms(&self, tier: Option<&str>, q: f64) -> Option<f64> {
        let t = self.live_tier(tier)?;
        (!t.latency.is_empty()).then(|| t.latency.value_at_quantile(q) as f64 / 1000.0)
    }

    /// Results so far per outcome class label, over one tier or all.
    pub fn snapshot_outcomes(&self, tier: Option<&str>) -> BTreeMap<String, u64> {
        self.live_tier(tier)
            .map(|t| t.outcome_map(&self.outcomes))
            .unwrap_or_default()
    }

    /// Counts so far, for progress lines.
    pub fn progress(&self) -> Progress {
        Progress {
            offered: self.totals.offered,
            completed: self.totals.completed,
            in_flight_cap_hits: self.totals.cap_hits,
            outcomes: self.overall.outcome_map(&self.outcomes),
            p95_ms: self.snapshot_p95(None),
        }
    }

    /// What the recorder holds in memory now.
    pub fn footprint(&self) -> Footprint {
        let mut live = 0;
        let mut live_bytes = 0;
        let mut count = |h: &Histogram<u64>| {
            live += 1;
            live_bytes += h.distinct_values() * std::mem::size_of::<u64>();
        };
        let mut sealed_bytes = 0;
        for slot in self.slots.values() {
            sealed_bytes += std::mem::size_of::<Slot>();
            match &slot.hists {
                Hists::Live(tiers) => {
                    tiers
                        .iter()
                        .flatten()
                        .flat_map(|t| t.hists())
                        .for_each(&mut count);
                }
                Hists::Sealed(map) => {
                    for (name, t) in map {
                        sealed_bytes += name.len()
                            + std::mem::size_of::<TierStats>()
                            + t.outcomes.keys().map(|k| k.len() + 16).sum::<usize>()
                            + t.latency.hdr.len()
                            + t.service_time.hdr.len()
                            + t.send_delay.hdr.len();
                    }
                }
            }
        }
        self.total_tiers
            .iter()
            .flatten()
            .chain([&self.overall])
            .flat_map(|t| t.hists())
            .chain([&self.template])
            .for_each(&mut count);
        Footprint {
            windows: self.slots.len(),
            open_windows: self.open.len(),
            live_histograms: live,
            live_histogram_bytes: live_bytes,
            sealed_bytes,
            late_buffered: self.late.len(),
        }
    }

    /// The last `n` windows that are sealed (final but for late stragglers), oldest first;
    /// fewer at the start of a run. Live decisions on windowed thresholds (`abort`) read these.
    pub fn sealed_tail(&self, n: usize) -> Vec<WindowStats> {
        let bound = match self.open.first() {
            Some(&w) => w,
            None => self.slots.keys().next_back().map_or(0, |&w| w + 1),
        };
        let win_s = self.window.as_secs_f64();
        let from = bound.saturating_sub(n as u64);
        (from..bound)
            .map(|w| {
                let start = w as f64 * win_s;
                let (c, sealed) = match self.slots.get(&w) {
                    Some(Slot {
                        c,
                        hists: Hists::Sealed(m),
                    }) => (*c, Some(m)),
                    Some(Slot { c, .. }) => (*c, None),
                    None => (Counters::default(), None),
                };
                let per_tier = self
                    .tiers
                    .list
                    .iter()
                    .map(|t| {
                        let s = sealed
                            .and_then(|m| m.get(t).cloned())
                            .unwrap_or_else(|| self.empty_tier());
                        (t.clone(), s)
                    })
                    .collect();
                window_stats(start, start + win_s, &c, per_tier)
            })
            .collect()
    }

    fn empty_tier(&self) -> TierStats {
        TierStats {
            count: 0,
            outcomes: BTreeMap::new(),
            latency: self.empty.clone(),
            service_time: self.empty.clone(),
            send_delay: self.empty.clone(),
        }
    }

    /// Ends recording at `end` (the run's length) and returns the per-window statistics
    /// (contiguous from 0, covering the run and any answers after it), the whole run's
    /// statistics, outcome counts, and the trust verdict: the run is untrustworthy when the send
    /// delay p99 exceeds `send_delay_p99_limit` (the harness fell behind its schedule) or the
    /// in-flight cap was hit.
    pub fn finish(
        mut self,
        end: Duration,
        send_delay_p99_limit: Duration,
    ) -> (Vec<WindowStats>, PhaseStats, BTreeMap<String, u64>, Trust) {
        self.flush_late();
        let open: Vec<u64> = self.open.iter().copied().collect();
        for w in open {
            self.seal(w);
        }
        // Sealing adds no late results (only `record` does), so one flush suffices.
        debug_assert!(self.late.is_empty());

        let win_s = self.window.as_secs_f64();
        let end_s = end.as_secs_f64();
        let last_seen_s = self.watermark.as_secs_f64().max(end_s);
        let by_end = end.as_nanos().div_ceil(self.window.as_nanos());
        let n = u64::try_from(by_end)
            .unwrap_or(u64::MAX)
            .max(self.slots.keys().next_back().map_or(0, |&w| w + 1));
        let mut windows = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let mut slots = std::mem::take(&mut self.slots);
        for w in 0..n {
            let (c, mut sealed) = match slots.remove(&w) {
                Some(Slot {
                    c,
                    hists: Hists::Sealed(m),
                }) => (c, m),
                Some(Slot { c, .. }) => (c, BTreeMap::new()),
                None => (Counters::default(), BTreeMap::new()),
            };
            let start = w as f64 * win_s;
            let mut stop = start + win_s;
            if w + 1 == n {
                // The last window ends with the run (or its last answer), not a full window
                // later, so its rates are not diluted by time that never happened.
                stop = stop.min(last_seen_s).max(start);
            }
            let per_tier = self
                .tiers
                .list
                .iter()
                .map(|t| {
                    let s = sealed.remove(t).unwrap_or_else(|| self.empty_tier());
                    (t.clone(), s)
                })
                .collect();
            windows.push(window_stats(start, stop, &c, per_tier));
        }

        let totals_per_tier = self
            .tiers
            .list
            .iter()
            .enumerate()
            .map(|(id, t)| {
                let s = match self.total_tiers.get(id) {
                    Some(Some(live)) => live.stats(&self.outcomes),
                    _ => self.empty_tier(),
                };
                (t.clone(), s)
            })
            .collect();
        let w = window_stats(0.0, end_s, &self.totals, totals_per_tier);
        let overall = self.overall.stats(&self.outcomes);
        let outcomes = overall.outcomes.clone();
        let trust = self.trust(send_delay_p99_limit);
        let totals = PhaseStats {
            start_s: w.start_s,
            end_s: w.end_s,
            offered: w.offered,
            sent: w.sent,
            completed: w.completed,
            offered_rate: w.offered_rate,
            achieved_rate: w.achieved_rate,
            in_flight_max: w.in_flight_max,
            in_flight_cap_hits: w.in_flight_cap_hits,
            per_tier: w.per_tier,
            overall,
        };
        (windows, totals, outcomes, trust)
    }

    fn trust(&self, send_delay_p99_limit: Duration) -> Trust {
        let d = &self.overall.delay;
        let (p99_ms, max_ms) = if d.is_empty() {
            (0.0, 0.0)
        } else {
            (
                d.value_at_quantile(0.99) as f64 / 1000.0,
                d.max() as f64 / 1000.0,
            )
        };
        let limit_ms = send_delay_p99_limit.as_secs_f64() * 1000.0;
        let mut reasons = Vec::new();
        if p99_ms > limit_ms {
            reasons.push(format!(
                "send delay p99 was {p99_ms:.1} ms (max {max_ms:.1} ms), above the \
                 {limit_ms:.1} ms limit: the harness fell behind its own schedule, so the target \
                 saw less load than planned and latencies include the harness's own delay"
            ));
        }
        let hits = self.totals.cap_hits;
        if hits > 0 {
            let first = self.first_cap_hit.unwrap_or_default().as_secs_f64();
            let share = 100.0 * hits as f64 / self.totals.offered.max(1) as f64;
            reasons.push(format!(
                "the in-flight cap was hit {hits} times ({share:.1}% of {} scheduled requests, \
                 first at {first:.1} s): those requests were not sent, so the target saw less \
                 load than planned",
                self.totals.offered
            ));
        }
        Trust {
            trustworthy: reasons.is_empty(),
            reasons,
            send_delay_p99_ms: p99_ms,
            max_send_delay_ms: max_ms,
            in_flight_cap_hits: hits,
        }
    }
}

/// The live statistics of tier `id`, created on first use.
fn live_tier<'a>(
    tiers: &'a mut Vec<Option<LiveTier>>,
    id: usize,
    template: &Histogram<u64>,
) -> &'a mut LiveTier {
    if tiers.len() <= id {
        tiers.resize_with(id + 1, || None);
    }
    tiers[id].get_or_insert_with(|| LiveTier::new(template))
}

fn window_stats(
    start_s: f64,
    end_s: f64,
    c: &Counters,
    per_tier: BTreeMap<String, TierStats>,
) -> WindowStats {
    let len = end_s - start_s;
    let rate = |n: u64| if len > 0.0 { n as f64 / len } else { 0.0 };
    WindowStats {
        start_s,
        end_s,
        offered: c.offered,
        sent: c.sent,
        completed: c.completed,
        offered_rate: rate(c.offered),
        achieved_rate: rate(c.sent),
        in_flight_max: c.in_flight_max,
        in_flight_cap_hits: c.cap_hits,
        per_tier,
    }
}
