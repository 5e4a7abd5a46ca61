//! Calendar (bucket) queue of next-event times (Brown 1988) backed by a
//! lazily-deleted binary heap.
//!
//! Bucket k holds subvolumes whose next time t has floor(t / width) == k for
//! k in [cur, cur + n_buckets), in a flat array of fixed-capacity buckets (one
//! allocation, a few cache lines per bucket). Far-future and idle subvolumes,
//! and the rare overflow of a full bucket, live in the heap; `peek` compares
//! the current bucket's minimum with the heap's, so correctness never depends
//! on where an entry sits. Heap entries are never moved out: a subvolume that
//! leaves the heap just stops matching its live time there, and stale entries
//! are dropped when they reach the top (or in a compaction), so taking a slow
//! subvolume out of the heap costs O(1) and putting one in O(1) on average. `width` is retuned from the observed event rate so
//! that a bucket holds about `TARGET_PER_BUCKET` entries, which makes an update
//! O(1) instead of O(log N). `peek` returns the exact minimum (time, id) with
//! ties broken by id, so the event order, and every trajectory, is the same
//! whatever the width or the tuning history.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    time: f64,
    id: u32,
}

const CAPACITY: usize = 8;
const IN_HEAP: u32 = u32::MAX;
const TARGET_PER_BUCKET: f64 = 2.0;
const TUNE_EVERY: u64 = 1 << 16;
/// Largest bucket index used, far below 2^64 and exactly representable.
const MAX_BUCKET: f64 = 4.0e18;

#[derive(Clone, Debug)]
pub struct CalendarQueue {
    width: f64,
    inv_width: f64,
    mask: u64,
    cur: u64,
    slots: Vec<Slot>,
    fill: Vec<u8>,
    /// Per id: (bucket << 3 | index in bucket), or IN_HEAP.
    location: Vec<u32>,
    in_calendar: usize,
    heap: BinaryHeap<Reverse<HeapEntry>>,
    /// Per id: the time of its live heap entry, +inf if it has none.
    heap_time: Vec<f64>,
    pops: u64,
    tune_time: f64,
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
    pub fn build(times: &[f64]) -> Self {
        let n = times.len();
        let n_buckets = (n.max(1) / 8).next_power_of_two().clamp(256, 1 << 14);
        let mut q = CalendarQueue {
            width: 1.0,
            inv_width: 1.0,
            mask: n_buckets as u64 - 1,
            cur: 0,
            slots: vec![Slot::default(); n_buckets * CAPACITY],
            fill: vec![0; n_buckets],
            location: vec![IN_HEAP; n],
            in_calendar: 0,
            heap: times
                .iter()
                .enumerate()
                .filter(|(_, t)| t.is_finite())
                .map(|(id, &time)| {
                    Reverse(HeapEntry {
                        time,
                        id: id as u32,
                    })
                })
                .collect(),
            heap_time: times.to_vec(),
            pops: 0,
            tune_time: 0.0,
        };
        // Initial width: spread the earliest n_buckets finite times over the
        // calendar; retuned from the event rate after TUNE_EVERY events.
        let mut finite: Vec<f64> = times.iter().copied().filter(|t| t.is_finite()).collect();
        if !finite.is_empty() {
            let k = finite.len().min(n_buckets) - 1;
            finite.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
            q.set_width(finite[k] / n_buckets as f64 * TARGET_PER_BUCKET);
        }
        q.jump_to_heap_min();
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
        if k < MAX_BUCKET && (k as i64 as u64) < self.cur + self.mask + 1 {
            Some(((k as i64 as u64) & self.mask) as usize)
        } else {
            None
        }
    }

    /// Put id in bucket b if it has room; false if full.
    #[inline(always)]
    fn try_push(&mut self, b: usize, id: usize, time: f64) -> bool {
        let f = self.fill[b] as usize;
        if f == CAPACITY {
            return false;
        }
        self.slots[b * CAPACITY + f] = Slot {
            time,
            id: id as u32,
        };
        self.fill[b] = f as u8 + 1;
        self.location[id] = (b * CAPACITY + f) as u32;
        self.in_calendar += 1;
        true
    }

    /// The live heap minimum (inf, 0 if none), dropping stale entries on top.
    #[inline]
    fn heap_peek(&mut self) -> (f64, usize) {
        while let Some(&Reverse(top)) = self.heap.peek() {
            let id = top.id as usize;
            if self.location[id] == IN_HEAP && self.heap_time[id] == top.time {
                return (top.time, id);
            }
            self.heap.pop();
        }
        (f64::INFINITY, 0)
    }

    #[inline]
    fn heap_insert(&mut self, id: usize, time: f64) {
        self.heap_time[id] = time;
        self.heap.push(Reverse(HeapEntry {
            time,
            id: id as u32,
        }));
        // Compact when stale entries dominate, so memory stays O(N).
        if self.heap.len() > 2 * self.heap_time.len() + 1024 {
            let live: Vec<Reverse<HeapEntry>> = self
                .heap
                .drain()
                .filter(|Reverse(e)| {
                    let id = e.id as usize;
                    self.location[id] == IN_HEAP && self.heap_time[id] == e.time
                })
                .collect();
            self.heap = BinaryHeap::from(live);
        }
    }

    /// Move heap entries that now fall inside the horizon (while there is room).
    fn migrate(&mut self) {
        loop {
            let (t, id) = self.heap_peek();
            if !t.is_finite() {
                return;
            }
            match self.bucket_for(t) {
                Some(b) if (self.fill[b] as usize) < CAPACITY => {
                    self.heap.pop();
                    self.heap_time[id] = f64::INFINITY;
                    self.try_push(b, id, t);
                }
                _ => return,
            }
        }
    }

    fn jump_to_heap_min(&mut self) {
        let (t, _) = self.heap_peek();
        if !t.is_finite() {
            return;
        }
        if t * self.inv_width >= MAX_BUCKET {
            self.set_width(t / 1.0e15);
        }
        self.cur = (t * self.inv_width) as u64;
        self.migrate();
    }

    /// The earliest (time, id); (inf, 0) when nothing is scheduled.
    #[inline]
    pub fn peek(&mut self) -> (f64, usize) {
        loop {
            let (th, ih) = self.heap_peek();
            if self.in_calendar == 0 {
                if !th.is_finite() {
                    return (f64::INFINITY, 0);
                }
                self.jump_to_heap_min();
                if self.in_calendar == 0 {
                    return (th, ih);
                }
                continue;
            }
            let b = (self.cur & self.mask) as usize;
            let f = self.fill[b] as usize;
            if f > 0 {
                let bucket = &self.slots[b * CAPACITY..b * CAPACITY + f];
                let mut best = (bucket[0].time, bucket[0].id);
                for s in &bucket[1..] {
                    if before((s.time, s.id), best) {
                        best = (s.time, s.id);
                    }
                }
                if before((th, ih as u32), best) {
                    return (th, ih);
                }
                return (best.0, best.1 as usize);
            }
            // An overflowed entry may be due before the next bucket starts.
            if th * self.inv_width < (self.cur + 1) as f64 {
                return (th, ih);
            }
            self.cur += 1;
            self.migrate();
        }
    }

    #[inline(always)]
    pub fn time_of(&self, id: usize) -> f64 {
        let loc = self.location[id];
        if loc == IN_HEAP {
            self.heap_time[id]
        } else {
            self.slots[loc as usize].time
        }
    }

    #[inline(always)]
    fn remove(&mut self, id: usize) {
        let loc = self.location[id];
        if loc == IN_HEAP {
            // Its heap entry (if any) becomes stale.
            self.heap_time[id] = f64::INFINITY;
            return;
        }
        let loc = loc as usize;
        let b = loc / CAPACITY;
        let last = b * CAPACITY + self.fill[b] as usize - 1;
        if loc != last {
            let moved = self.slots[last];
            self.slots[loc] = moved;
            self.location[moved.id as usize] = loc as u32;
        }
        self.fill[b] -= 1;
        self.location[id] = IN_HEAP;
        self.in_calendar -= 1;
    }

    /// Set the next time of `id` (>= the current time; +inf for never).
    #[inline]
    pub fn update(&mut self, id: usize, time: f64) {
        self.remove(id);
        if time.is_finite() {
            let pushed = match self.bucket_for(time) {
                Some(b) => self.try_push(b, id, time),
                None => false,
            };
            if !pushed {
                self.heap_insert(id, time);
            }
        }
    }

    /// Called once per fired event at time `now`; retunes the width from the
    /// event rate seen over the last TUNE_EVERY events.
    #[inline]
    pub fn note_event(&mut self, now: f64) {
        self.pops += 1;
        if self.pops.is_multiple_of(TUNE_EVERY) {
            let span = now - self.tune_time;
            self.tune_time = now;
            if span > 0.0 {
                let ideal = span / TUNE_EVERY as f64 * TARGET_PER_BUCKET;
                if ideal > 2.0 * self.width || ideal < 0.5 * self.width {
                    self.rebuild(ideal, now);
                }
            }
        }
    }

    fn rebuild(&mut self, width: f64, now: f64) {
        let mut moved = Vec::with_capacity(self.in_calendar);
        for b in 0..self.fill.len() {
            let f = self.fill[b] as usize;
            moved.extend_from_slice(&self.slots[b * CAPACITY..b * CAPACITY + f]);
            self.fill[b] = 0;
        }
        for s in &moved {
            self.location[s.id as usize] = IN_HEAP;
            self.heap_time[s.id as usize] = f64::INFINITY;
        }
        self.in_calendar = 0;
        self.set_width(width);
        let k = now * self.inv_width;
        self.cur = if k < MAX_BUCKET { k as u64 } else { 0 };
        for s in moved {
            self.update(s.id as usize, s.time);
        }
        self.migrate();
    }

    /// Queue bytes per subvolume (the bucket array is shared and excluded).
    pub fn bytes_per_entry() -> usize {
        std::mem::size_of::<u32>() + std::mem::size_of::<f64>()
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
            let mut q = CalendarQueue::build(&times);
            let mut now;
            for step in 0..60_000 {
                let (t, id) = q.peek();
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
                q.note_event(now);
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
                q.update(id, new_t);
                times[id] = new_t;
                let other = (rng.uniform() * n as f64) as usize;
                let other_t = if rng.uniform() < 0.5 && times[other].is_finite() {
                    now + (times[other] - now) * 0.5
                } else {
                    now + scale * rng.exp1()
                };
                q.update(other, other_t);
                times[other] = other_t;
                assert_eq!(q.time_of(other), other_t);
            }
        }
    }
}
