//! Calendar (bucket) queue of next-event times (Brown 1988) backed by a
//! lazily-deleted binary heap.
//!
//! Bucket k holds ids whose next time t has floor(t / width) == k for k in
//! [cur, cur + n_buckets), in a flat array of fixed-capacity buckets of one
//! cache line each. Far-future and idle ids, and the rare overflow of a full
//! bucket, live in the heap; `peek` compares the current bucket's minimum with
//! the heap's, so correctness never depends on where an entry sits.
//!
//! The live time and the location (bucket slot, or `IN_HEAP`) of every id are
//! kept by the caller in a [`Store`], so that the NSM can hold them in the same
//! cache line as the subvolume's counts: reading a subvolume's time for the
//! Gibson-Bruck rescaling, and moving it in the queue, then touch no other
//! per-subvolume array.
//!
//! Heap entries are never moved out: an id that leaves the heap just stops
//! matching its live time there, and stale entries are dropped when they reach
//! the top (or in a compaction), so taking an idle id out of the heap costs
//! O(1) and putting one in O(1) on average. `peek` first compares the bucket
//! minimum with the raw heap top (a lower bound of the live heap minimum) and
//! only validates the top when that bound could win. `width` is retuned from
//! the observed event rate so that a bucket holds about `TARGET_PER_BUCKET`
//! entries, which makes an update O(1) instead of O(log N). `peek` returns the
//! exact minimum (time, id) with ties broken by id, so the event order, and
//! every trajectory, is the same whatever the width or the tuning history.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Per-id live time and location, owned by the caller.
pub trait Store {
    /// Live next time of id (+inf when it has none).
    fn time(&self, id: usize) -> f64;
    /// Slot index in the calendar, or `IN_HEAP`.
    fn loc(&self, id: usize) -> u32;
    /// A caller's tag for id, kept beside its time in the calendar and
    /// handed back by `hint` (the NSM stores the site, to prefetch).
    fn tag(&self, id: usize) -> u32;
    fn set_loc(&mut self, id: usize, loc: u32);
    fn set(&mut self, id: usize, time: f64, loc: u32);
}

/// Location of an id that is not in a calendar bucket (in the heap, or idle
/// with time +inf).
pub const IN_HEAP: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    time: f64,
    id: u32,
    tag: u32,
}

const CAPACITY: usize = 8;
const TARGET_PER_BUCKET: f64 = 1.0;
const TUNE_EVERY: u64 = 1 << 16;
/// Largest bucket index used, far below 2^63 and exactly representable.
const MAX_BUCKET: f64 = 4.0e18;

/// One bucket: one cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket([Slot; CAPACITY]);

#[derive(Clone, Debug)]
pub struct CalendarQueue {
    width: f64,
    inv_width: f64,
    mask: u64,
    cur: u64,
    buckets: Vec<Bucket>,
    fill: Vec<u8>,
    in_calendar: usize,
    heap: BinaryHeap<Reverse<HeapEntry>>,
    n_ids: usize,
    pops: u64,
    tune_time: f64,
    /// (id, tag) of a likely next event after the one `peek` returned.
    hint: (u32, u32),
}

/// Heap key ordered by (time, id); times are never NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
struct HeapEntry {
    time: f64,
    id: u32,
}

impl Eq for HeapEntry {}

impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeapEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.time
            .total_cmp(&other.time)
            .then(self.id.cmp(&other.id))
    }
}

#[inline(always)]
fn before(a: (f64, u32), b: (f64, u32)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

impl CalendarQueue {
    /// Queue ids 0..n at the times `store` holds for them (their locations
    /// are overwritten).
    pub fn build<S: Store>(n: usize, store: &mut S) -> Self {
        let n_buckets = (n.max(1) / 8).next_power_of_two().clamp(256, 1 << 15);
        let mut finite = Vec::new();
        let mut heap = Vec::new();
        for id in 0..n {
            let time = store.time(id);
            store.set_loc(id, IN_HEAP);
            if time.is_finite() {
                finite.push(time);
                heap.push(Reverse(HeapEntry {
                    time,
                    id: id as u32,
                }));
            }
        }
        let mut q = CalendarQueue {
            width: 1.0,
            inv_width: 1.0,
            mask: n_buckets as u64 - 1,
            cur: 0,
            buckets: vec![Bucket::default(); n_buckets],
            fill: vec![0; n_buckets],
            in_calendar: 0,
            heap: BinaryHeap::from(heap),
            n_ids: n,
            pops: 0,
            tune_time: 0.0,
            hint: (u32::MAX, 0),
        };
        // Initial width: spread the earliest n_buckets finite times over the
        // calendar; retuned from the event rate after TUNE_EVERY events.
        if !finite.is_empty() {
            let k = finite.len().min(n_buckets) - 1;
            finite.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
            q.set_width(finite[k] / n_buckets as f64 * TARGET_PER_BUCKET);
        }
        q.jump_to_heap_min(store);
        q
    }

    fn set_width(&mut self, width: f64) {
        let width = if width.is_finite() && width > 0.0 {
            width.max(1e-300)
        } else {
            1.0
        };
        self.width = width;
        self.inv_width = 1.0 / width;
    }

    /// The calendar bucket for time t, if t lies inside the horizon.
    #[inline(always)]
    fn bucket_for(&self, t: f64) -> Option<usize> {
        let k = t * self.inv_width;
        // i64 conversion is one instruction on x86-64, u64 is not.
        if k < MAX_BUCKET && (k as i64 as u64) <= self.cur + self.mask {
            Some(((k as i64 as u64) & self.mask) as usize)
        } else {
            None
        }
    }

    /// The raw heap top (possibly stale): a lower bound of the live minimum.
    #[inline(always)]
    fn heap_bound(&self) -> f64 {
        match self.heap.peek() {
            Some(Reverse(top)) => top.time,
            None => f64::INFINITY,
        }
    }

    /// The live heap minimum (inf, 0 if none), dropping stale entries on top.
    #[inline]
    fn heap_peek<S: Store>(&mut self, store: &S) -> (f64, usize) {
        while let Some(&Reverse(top)) = self.heap.peek() {
            let id = top.id as usize;
            if store.loc(id) == IN_HEAP && store.time(id) == top.time {
                return (top.time, id);
            }
            self.heap.pop();
        }
        (f64::INFINITY, 0)
    }

    #[cold]
    fn heap_insert<S: Store>(&mut self, store: &mut S, id: usize, time: f64) {
        store.set(id, time, IN_HEAP);
        self.heap.push(Reverse(HeapEntry {
            time,
            id: id as u32,
        }));
        // Compact when stale entries dominate, so memory stays O(N).
        if self.heap.len() > 2 * self.n_ids + 1024 {
            let live: Vec<Reverse<HeapEntry>> = self
                .heap
                .drain()
                .filter(|Reverse(e)| {
                    let id = e.id as usize;
                    store.loc(id) == IN_HEAP && store.time(id) == e.time
                })
                .collect();
            self.heap = BinaryHeap::from(live);
        }
    }

    /// Move heap entries that now fall inside the horizon (while there is room).
    #[cold]
    fn migrate<S: Store>(&mut self, store: &mut S) {
        loop {
            let (t, id) = self.heap_peek(store);
            if !t.is_finite() {
                return;
            }
            match self.bucket_for(t) {
                Some(b) if (self.fill[b] as usize) < CAPACITY => {
                    self.heap.pop();
                    self.push(store, b, id, t);
                }
                _ => return,
            }
        }
    }

    #[cold]
    fn jump_to_heap_min<S: Store>(&mut self, store: &mut S) {
        let (t, _) = self.heap_peek(store);
        if !t.is_finite() {
            return;
        }
        if t * self.inv_width >= MAX_BUCKET {
            self.set_width(t / 1.0e15);
        }
        self.cur = (t * self.inv_width) as u64;
        self.migrate(store);
    }

    /// The earliest (time, id), given that the calendar is empty.
    #[cold]
    fn peek_idle<S: Store>(&mut self, store: &mut S) -> (f64, usize) {
        let (th, ih) = self.heap_peek(store);
        if th.is_finite() {
            self.jump_to_heap_min(store);
        }
        (th, ih)
    }

    /// Put id in bucket b, which has room.
    #[inline(always)]
    fn push<S: Store>(&mut self, store: &mut S, b: usize, id: usize, time: f64) {
        let f = self.fill[b] as usize;
        debug_assert!(f < CAPACITY);
        self.buckets[b].0[f] = Slot {
            time,
            id: id as u32,
            tag: store.tag(id),
        };
        self.fill[b] = f as u8 + 1;
        store.set(id, time, (b * CAPACITY + f) as u32);
        self.in_calendar += 1;
    }

    /// The earliest (time, id); (inf, 0) when nothing is scheduled.
    #[inline]
    pub fn peek<S: Store>(&mut self, store: &mut S) -> (f64, usize) {
        loop {
            let b = (self.cur & self.mask) as usize;
            let f = self.fill[b] as usize;
            if f > 0 {
                let bucket = &self.buckets[b].0[..f];
                let mut best = (bucket[0].time, bucket[0].id);
                let mut next = 0;
                for (k, s) in bucket.iter().enumerate().skip(1) {
                    if before((s.time, s.id), best) {
                        best = (s.time, s.id);
                        next = k;
                    }
                }
                // Hint: another entry of this bucket (the runner-up when there
                // are two), else the first entry of the next bucket.
                let h = if f > 1 {
                    &bucket[if next == 0 { 1 } else { 0 }]
                } else {
                    let b1 = ((self.cur + 1) & self.mask) as usize;
                    &self.buckets[b1].0[0]
                };
                self.hint = (h.id, h.tag);
                if best.0 < self.heap_bound() {
                    return (best.0, best.1 as usize);
                }
                let (th, ih) = self.heap_peek(store);
                if before((th, ih as u32), best) {
                    return (th, ih);
                }
                return (best.0, best.1 as usize);
            }
            if self.in_calendar == 0 {
                return self.peek_idle(store);
            }
            let next = self.cur + 1;
            // An overflowed entry may be due before the next bucket starts.
            if self.heap_bound() * self.inv_width < next as f64 {
                let (th, ih) = self.heap_peek(store);
                if th * self.inv_width < next as f64 {
                    return (th, ih);
                }
            }
            self.cur = next;
            // Heap entries in the bucket that just entered the horizon move
            // in. (An overflowed entry on top, whose bucket is full, would
            // block this; it stays in the heap, where `peek` still sees it.)
            let k = self.heap_bound() * self.inv_width;
            if k < (next + self.mask) as f64 + 1.0 && k >= (next + self.mask) as f64 {
                self.migrate(store);
            }
        }
    }

    /// (id, tag) of a subvolume likely to fire soon after the one `peek` last
    /// returned (possibly stale or wrong: only for prefetching).
    #[inline(always)]
    pub fn hint(&self) -> (u32, u32) {
        self.hint
    }

    /// Set the next time of `id` (>= the current time; +inf for never).
    #[inline]
    pub fn update<S: Store>(&mut self, store: &mut S, id: usize, time: f64) {
        let loc = store.loc(id);
        if loc != IN_HEAP {
            // Take id out of its bucket (swap with the bucket's last entry).
            let loc = loc as usize;
            let b = loc / CAPACITY;
            let f = self.fill[b] as usize;
            debug_assert!(f > 0 && loc < b * CAPACITY + f);
            let last = f - 1;
            if loc % CAPACITY != last {
                let moved = self.buckets[b].0[last];
                self.buckets[b].0[loc % CAPACITY] = moved;
                store.set_loc(moved.id as usize, loc as u32);
            }
            self.fill[b] = last as u8;
            self.in_calendar -= 1;
        }
        // Otherwise its heap entry (if any) becomes stale once the time
        // changes or the id enters the calendar.
        if time.is_finite() {
            if let Some(b) = self.bucket_for(time) {
                if (self.fill[b] as usize) < CAPACITY {
                    self.push(store, b, id, time);
                    return;
                }
            }
            self.heap_insert(store, id, time);
        } else {
            store.set(id, f64::INFINITY, IN_HEAP);
        }
    }

    /// Called once per fired event at time `now`; retunes the width from the
    /// event rate seen over the last TUNE_EVERY events.
    #[inline]
    pub fn note_event<S: Store>(&mut self, store: &mut S, now: f64) {
        self.pops += 1;
        if self.pops.is_multiple_of(TUNE_EVERY) {
            self.retune(store, now);
        }
    }

    #[cold]
    fn retune<S: Store>(&mut self, store: &mut S, now: f64) {
        let span = now - self.tune_time;
        self.tune_time = now;
        if span > 0.0 {
            let ideal = span / TUNE_EVERY as f64 * TARGET_PER_BUCKET;
            if ideal > 2.0 * self.width || ideal < 0.5 * self.width {
                self.rebuild(store, ideal, now);
            }
        }
    }

    fn rebuild<S: Store>(&mut self, store: &mut S, width: f64, now: f64) {
        let mut moved = Vec::with_capacity(self.in_calendar);
        for b in 0..self.fill.len() {
            let f = self.fill[b] as usize;
            moved.extend_from_slice(&self.buckets[b].0[..f]);
            self.fill[b] = 0;
        }
        for s in &moved {
            store.set_loc(s.id as usize, IN_HEAP);
        }
        self.in_calendar = 0;
        self.set_width(width);
        let k = now * self.inv_width;
        self.cur = if k < MAX_BUCKET { k as u64 } else { 0 };
        for s in moved {
            self.update(store, s.id as usize, s.time);
        }
        self.migrate(store);
    }

    /// Memory of the queue (buckets and heap), in bytes.
    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self.fill.capacity()
            + self.heap.capacity() * std::mem::size_of::<Reverse<HeapEntry>>()
    }
}

/// A plain `Store`: two arrays (for tests and other callers).
#[derive(Clone, Debug)]
pub struct VecStore {
    pub time: Vec<f64>,
    pub loc: Vec<u32>,
}

impl VecStore {
    pub fn new(times: &[f64]) -> Self {
        VecStore {
            time: times.to_vec(),
            loc: vec![IN_HEAP; times.len()],
        }
    }
}

impl Store for VecStore {
    fn time(&self, id: usize) -> f64 {
        self.time[id]
    }
    fn loc(&self, id: usize) -> u32 {
        self.loc[id]
    }
    fn tag(&self, _id: usize) -> u32 {
        0
    }
    fn set_loc(&mut self, id: usize, loc: u32) {
        self.loc[id] = loc;
    }
    fn set(&mut self, id: usize, time: f64, loc: u32) {
        self.time[id] = time;
        self.loc[id] = loc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// Drive the queue like the NSM does (pop the min, reschedule it and a
    /// random other id at times >= now) and check every peek against a
    /// brute-force minimum, through retuning, bucket overflow and idle spells.
    #[test]
    fn always_returns_exact_minimum() {
        for n in [1usize, 5, 300, 3000] {
            let mut rng = Stream::new(3, n as u64);
            let mut times: Vec<f64> = (0..n)
                .map(|k| {
                    if k % 7 == 3 {
                        f64::INFINITY
                    } else {
                        rng.exp1() * 1e-3
                    }
                })
                .collect();
            let mut store = VecStore::new(&times);
            let mut q = CalendarQueue::build(n, &mut store);
            let mut now;
            for step in 0..60_000 {
                let (t, id) = q.peek(&mut store);
                let best = times
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
                    .unwrap();
                assert_eq!((t, id), (*best.1, best.0), "n {n} step {step}");
                if !t.is_finite() {
                    break;
                }
                now = t;
                q.note_event(&mut store, now);
                let scale = if step < 30_000 { 1e-3 } else { 1e-7 };
                let new_t = if rng.uniform() < 0.02 {
                    f64::INFINITY
                } else if rng.uniform() < 0.01 {
                    now + 1e3 * rng.exp1()
                } else if rng.uniform() < 0.05 {
                    // Many equal times: exercises full buckets and ties.
                    now
                } else {
                    now + scale * rng.exp1()
                };
                q.update(&mut store, id, new_t);
                times[id] = new_t;
                let other = (rng.uniform() * n as f64) as usize;
                let other_t = if rng.uniform() < 0.5 && times[other].is_finite() {
                    now + (times[other] - now) * 0.5
                } else {
                    now + scale * rng.exp1()
                };
                q.update(&mut store, other, other_t);
                times[other] = other_t;
                assert_eq!(store.time(other), other_t);
                // Every location is consistent.
                if step % 4096 == 0 {
                    for (id, &t) in times.iter().enumerate() {
                        assert_eq!(store.time(id), t);
                        let loc = store.loc(id);
                        if loc != IN_HEAP {
                            let b = loc as usize / CAPACITY;
                            assert!((loc as usize % CAPACITY) < q.fill[b] as usize);
                            let s = q.buckets[b].0[loc as usize % CAPACITY];
                            assert_eq!((s.time, s.id as usize), (t, id));
                        }
                    }
                }
            }
        }
    }
}
