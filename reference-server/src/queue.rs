//! The tiered priority queue with admission control, deadlines, anti-starvation aging and
//! batch selection. Pure: time is an argument, so every policy is tested without sleeping.

use crate::types::Tier;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What makes two jobs runnable as one tensor batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// Model profile name.
    pub model: String,
    /// Denoising steps.
    pub steps: u32,
    /// Output resolution, `WxH`.
    pub resolution: String,
    /// Step a resumed job starts from (0 for fresh jobs): batch-mates must start together.
    pub resume_step: u32,
}

/// One waiting job.
#[derive(Debug)]
pub struct Entry<T> {
    /// The job itself (opaque to the queue).
    pub item: T,
    /// Its tier.
    pub tier: Tier,
    /// When it entered the queue.
    pub enqueued: Instant,
    /// When it must have finished; past this it leaves the queue as timed out.
    pub deadline: Instant,
    /// Jobs with equal keys may share a batch.
    pub key: BatchKey,
}

/// Admission refused: the tier is at its cap.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueFull {
    /// The tier that is full.
    pub tier: Tier,
    /// How many jobs it holds.
    pub depth: usize,
}

/// Three FIFO queues served by effective priority.
///
/// A job's effective rank is its tier's rank minus one for every `aging` it has waited, so a
/// relax job that has waited `2 * aging` competes with a fresh turbo job: turbo goes first under
/// load, and nothing waits forever.
#[derive(Debug)]
pub struct TieredQueue<T> {
    tiers: [VecDeque<Entry<T>>; 3],
    caps: [usize; 3],
    aging: Duration,
    /// Tiers nothing is served from (a stalled queue): they still admit, expire and cancel.
    paused: [bool; 3],
}

impl<T> TieredQueue<T> {
    /// A queue with per-tier caps (turbo, fast, relax) and the aging period.
    pub fn new(caps: [usize; 3], aging: Duration) -> Self {
        TieredQueue {
            tiers: Default::default(),
            caps,
            aging,
            paused: [false; 3],
        }
    }

    /// Stops (`true`) or resumes serving each tier, indexed by [`Tier::rank`]. A paused tier
    /// keeps admitting jobs, which wait (and expire at their deadline) until it resumes.
    pub fn set_paused(&mut self, paused: [bool; 3]) {
        self.paused = paused;
    }

    /// Admits a job, or refuses it when its tier is full.
    pub fn push(&mut self, entry: Entry<T>) -> Result<(), (QueueFull, Entry<T>)> {
        let q = &mut self.tiers[entry.tier.rank()];
        if q.len() >= self.caps[entry.tier.rank()] {
            let full = QueueFull {
                tier: entry.tier,
                depth: q.len(),
            };
            return Err((full, entry));
        }
        q.push_back(entry);
        Ok(())
    }

    /// Puts a job back at the front of its tier (a resumed or retried job keeps its place).
    pub fn push_front(&mut self, entry: Entry<T>) {
        self.tiers[entry.tier.rank()].push_front(entry);
    }

    /// Removes and returns every job whose deadline has passed.
    pub fn expire(&mut self, now: Instant) -> Vec<Entry<T>> {
        let mut out = Vec::new();
        for q in &mut self.tiers {
            let mut i = 0;
            while i < q.len() {
                if q[i].deadline <= now {
                    out.extend(q.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        out
    }

    /// Effective rank of an entry at `now` (lower is served first).
    fn score(&self, e: &Entry<T>, now: Instant) -> f64 {
        let waited = now.saturating_duration_since(e.enqueued).as_secs_f64();
        e.tier.rank() as f64 - waited / self.aging.as_secs_f64()
    }

    /// The job that would be served next, as (tier, position).
    pub fn peek(&self, now: Instant) -> Option<&Entry<T>> {
        self.head_tier(now).and_then(|t| self.tiers[t].front())
    }

    fn head_tier(&self, now: Instant) -> Option<usize> {
        // Within a tier the front is the oldest, so only fronts compete.
        (0..3)
            .filter(|&t| !self.paused[t])
            .filter_map(|t| self.tiers[t].front().map(|e| (t, self.score(e, now))))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(|(t, _)| t)
    }

    /// Number of queued jobs compatible with `key`.
    pub fn count_compatible(&self, key: &BatchKey) -> usize {
        self.tiers
            .iter()
            .zip(self.paused)
            .filter(|(_, paused)| !paused)
            .flat_map(|(q, _)| q.iter())
            .filter(|e| &e.key == key)
            .count()
    }

    /// Takes the next job and up to `max - 1` compatible ones, best effective rank first.
    pub fn take_batch(&mut self, now: Instant, max: usize) -> Vec<Entry<T>> {
        let Some(t) = self.head_tier(now) else {
            return Vec::new();
        };
        let head = self.tiers[t].pop_front().expect("head tier is not empty");
        let key = head.key.clone();
        let mut batch = vec![head];
        while batch.len() < max {
            let best = (0..3)
                .filter(|&t| !self.paused[t])
                .filter_map(|t| {
                    let i = self.tiers[t].iter().position(|e| e.key == key)?;
                    Some((t, i, self.score(&self.tiers[t][i], now)))
                })
                .min_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
            match best {
                Some((t, i, _)) => batch.extend(self.tiers[t].remove(i)),
                None => break,
            }
        }
        batch
    }

    /// Removes the first job matching `pred` (a cancellation).
    pub fn remove_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Option<Entry<T>> {
        for q in &mut self.tiers {
            if let Some(i) = q.iter().position(|e| pred(&e.item)) {
                return q.remove(i);
            }
        }
        None
    }

    /// Position (0-based) of the first job matching `pred` in serving order of its own tier.
    pub fn position_where(&self, mut pred: impl FnMut(&T) -> bool) -> Option<usize> {
        self.tiers
            .iter()
            .find_map(|q| q.iter().position(|e| pred(&e.item)))
    }

    /// Jobs waiting in a tier.
    pub fn depth(&self, tier: Tier) -> usize {
        self.tiers[tier.rank()].len()
    }

    /// Jobs waiting in a tier for a model.
    pub fn depth_for_model(&self, tier: Tier, model: &str) -> usize {
        self.tiers[tier.rank()]
            .iter()
            .filter(|e| e.key.model == model)
            .count()
    }

    /// Age of the oldest job in a tier (zero when empty).
    pub fn oldest_age(&self, tier: Tier, now: Instant) -> Duration {
        self.tiers[tier.rank()]
            .front()
            .map(|e| now.saturating_duration_since(e.enqueued))
            .unwrap_or_default()
    }

    /// Total jobs waiting.
    pub fn len(&self) -> usize {
        self.tiers.iter().map(VecDeque::len).sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest deadline of any waiting job.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.tiers
            .iter()
            .flat_map(|q| q.iter())
            .map(|e| e.deadline)
            .min()
    }

    /// Removes everything (drain at shutdown).
    pub fn drain_all(&mut self) -> Vec<Entry<T>> {
        self.tiers.iter_mut().flat_map(|q| q.drain(..)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(model: &str) -> BatchKey {
        BatchKey {
            model: model.into(),
            steps: 8,
            resolution: "256x256".into(),
            resume_step: 0,
        }
    }

    fn entry(id: u32, tier: Tier, at: Instant, model: &str) -> Entry<u32> {
        Entry {
            item: id,
            tier,
            enqueued: at,
            deadline: at + Duration::from_secs(100),
            key: key(model),
        }
    }

    fn q() -> TieredQueue<u32> {
        TieredQueue::new([2, 3, 10], Duration::from_secs(10))
    }

    #[test]
    fn turbo_before_fast_before_relax() {
        let t0 = Instant::now();
        let mut q = q();
        q.push(entry(3, Tier::Relax, t0, "a")).unwrap();
        q.push(entry(2, Tier::Fast, t0, "b")).unwrap();
        q.push(entry(1, Tier::Turbo, t0, "c")).unwrap();
        let order: Vec<u32> = (0..3).map(|_| q.take_batch(t0, 1)[0].item).collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert!(q.is_empty());
    }

    #[test]
    fn fifo_within_a_tier() {
        let t0 = Instant::now();
        let mut q = q();
        q.push(entry(1, Tier::Fast, t0, "a")).unwrap();
        q.push(entry(2, Tier::Fast, t0 + Duration::from_millis(1), "b"))
            .unwrap();
        assert_eq!(q.take_batch(t0, 1)[0].item, 1);
    }

    #[test]
    fn aged_relax_overtakes_fresh_turbo() {
        let t0 = Instant::now();
        let mut q = q();
        q.push(entry(9, Tier::Relax, t0, "a")).unwrap();
        let later = t0 + Duration::from_secs(25); // 2.5 aging periods: rank 2 - 2.5 < 0
        q.push(entry(1, Tier::Turbo, later, "b")).unwrap();
        assert_eq!(q.peek(later).unwrap().item, 9);
        // But only after enough waiting.
        let mut q2 = q2_with(t0);
        assert_eq!(q2.take_batch(t0 + Duration::from_secs(5), 1)[0].item, 1);
    }

    fn q2_with(t0: Instant) -> TieredQueue<u32> {
        let mut q = q();
        q.push(entry(9, Tier::Relax, t0, "a")).unwrap();
        q.push(entry(1, Tier::Turbo, t0 + Duration::from_secs(5), "b"))
            .unwrap();
        q
    }

    #[test]
    fn caps_refuse_per_tier() {
        let t0 = Instant::now();
        let mut q = q();
        q.push(entry(1, Tier::Turbo, t0, "a")).unwrap();
        q.push(entry(2, Tier::Turbo, t0, "a")).unwrap();
        let (full, back) = q.push(entry(3, Tier::Turbo, t0, "a")).unwrap_err();
        assert_eq!(
            full,
            QueueFull {
                tier: Tier::Turbo,
                depth: 2
            }
        );
        assert_eq!(back.item, 3);
        q.push(entry(4, Tier::Fast, t0, "a")).unwrap();
        assert_eq!(q.depth(Tier::Turbo), 2);
        assert_eq!(q.depth(Tier::Fast), 1);
    }

    #[test]
    fn deadlines_expire_jobs() {
        let t0 = Instant::now();
        let mut q = q();
        let mut e = entry(1, Tier::Fast, t0, "a");
        e.deadline = t0 + Duration::from_secs(1);
        q.push(e).unwrap();
        q.push(entry(2, Tier::Fast, t0, "a")).unwrap();
        assert!(q.expire(t0).is_empty());
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let gone = q.expire(t0 + Duration::from_secs(1));
        assert_eq!(gone.iter().map(|e| e.item).collect::<Vec<_>>(), vec![1]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn batches_take_only_compatible_jobs_in_priority_order() {
        let t0 = Instant::now();
        let mut q = TieredQueue::new([10, 10, 10], Duration::from_secs(10));
        q.push(entry(1, Tier::Fast, t0, "a")).unwrap();
        q.push(entry(2, Tier::Fast, t0, "b")).unwrap();
        q.push(entry(3, Tier::Relax, t0, "a")).unwrap();
        q.push(entry(4, Tier::Turbo, t0, "a")).unwrap();
        q.push(entry(5, Tier::Fast, t0, "a")).unwrap();
        assert_eq!(q.count_compatible(&key("a")), 4);
        let b: Vec<u32> = q.take_batch(t0, 3).into_iter().map(|e| e.item).collect();
        assert_eq!(b, vec![4, 1, 5]);
        let b: Vec<u32> = q.take_batch(t0, 3).into_iter().map(|e| e.item).collect();
        assert_eq!(b, vec![2]);
        assert_eq!(q.take_batch(t0, 3)[0].item, 3);
    }

    #[test]
    fn paused_tiers_admit_but_are_not_served() {
        let t0 = Instant::now();
        let mut q = TieredQueue::new([10, 10, 10], Duration::from_secs(10));
        q.push(entry(1, Tier::Turbo, t0, "a")).unwrap();
        q.push(entry(2, Tier::Fast, t0, "a")).unwrap();
        q.set_paused([true, false, false]);
        q.push(entry(3, Tier::Turbo, t0, "a")).unwrap();
        assert_eq!(q.peek(t0).unwrap().item, 2);
        assert_eq!(q.count_compatible(&key("a")), 1);
        let b: Vec<u32> = q.take_batch(t0, 4).into_iter().map(|e| e.item).collect();
        assert_eq!(b, vec![2], "no batch-mates from a paused tier");
        assert!(q.peek(t0).is_none());
        assert_eq!(q.depth(Tier::Turbo), 2);
        q.set_paused([false; 3]);
        assert_eq!(q.take_batch(t0, 4).len(), 2);
    }

    #[test]
    fn cancel_removes_and_stats_follow() {
        let t0 = Instant::now();
        let mut q = q();
        q.push(entry(1, Tier::Relax, t0, "a")).unwrap();
        q.push(entry(2, Tier::Relax, t0 + Duration::from_secs(1), "b"))
            .unwrap();
        assert_eq!(q.position_where(|i| *i == 2), Some(1));
        assert_eq!(q.depth_for_model(Tier::Relax, "b"), 1);
        assert_eq!(
            q.oldest_age(Tier::Relax, t0 + Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(q.remove_where(|i| *i == 1).unwrap().item, 1);
        assert!(q.remove_where(|i| *i == 1).is_none());
        assert_eq!(
            q.oldest_age(Tier::Relax, t0 + Duration::from_secs(3)),
            Duration::from_secs(2)
        );
        assert_eq!(q.drain_all().len(), 1);
        assert_eq!(q.oldest_age(Tier::Relax, t0), Duration::ZERO);
    }
}
