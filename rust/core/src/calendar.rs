//! Two-level calendar (bucket) queue of next-event times (Brown 1988), with a
//! lazily-deleted binary heap for the far future and for overflow.
//!
//! Fine level: `N` buckets of width `width`, one cache line each (up to
//! `CAPACITY` entries), holding every id whose bucket index
//! k = floor(t / width) lies in [cur, limit), where `limit` is the end of the
//! *epoch* (E = N / 2 buckets) after the current one; the fine range thus
//! never wraps onto itself. Coarse level: `M` unordered lists, one per epoch,
//! holding ids of the M epochs after that; when `cur` enters a new epoch, the
//! coarse list of the epoch after it is spread into the fine buckets (each
//! entry moves once, O(1)). Ids further out, and the rare overflow of a full
//! fine bucket, go to the heap; `peek` always compares with the heap top, so
//! correctness never depends on where an entry sits.
//!
//! The live time and the location (fine slot, `IN_COARSE` or `IN_HEAP`) of
//! every id are kept by the caller in a [`Store`], so that the NSM holds them
//! in the same cache line as the subvolume's counts. Coarse and heap entries
//! are deleted lazily: an id that leaves them just stops matching its live
//! time and location there, and stale entries are dropped when met (or in a
//! compaction, so memory stays O(N)). A slow subvolume thus costs O(1) to
//! file in the coarse level and nothing to take out.
//!
//! `width` is set from the caller's total event rate when known (else from
//! the queued times) and retuned from the observed event rate so that a
//! bucket holds about `TARGET_PER_BUCKET` entries; the retune comes early
//! when `peek` walks many empty buckets, and a run of empty buckets is
//! skipped eight at a time. `peek` returns the exact minimum (time, id) with
//! ties broken by id, so the event order, and every trajectory, is the same
//! whatever the width or the tuning history.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Per-id live time and location, owned by the caller.
pub trait Store {
    /// Live next time of id (+inf when it has none).
    fn time(&self, id: usize) -> f64;
    /// Slot index in the calendar, or `IN_COARSE` / `IN_HEAP`.
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
/// Location of an id filed in the coarse level.
pub const IN_COARSE: u32 = u32::MAX - 1;

/// A coarse-list entry: 12 bytes; `gen` holds the id's generation in its
/// low byte and the index of the node's list above it; a free node has id
/// NIL. Live iff the low byte of `gen` is the id's current generation and the id is still located `IN_COARSE` (the time is then the
/// live one, in the caller's store). The generation check needs no access to
/// the caller's records, so a stale entry costs no cache miss on them.
#[derive(Clone, Copy, Debug)]
struct CNode {
    id: u32,
    next: u32,
    gen: u32,
}

const NIL: u32 = u32::MAX;

/// A bucket entry. Unused slots hold `Slot::default()` (time +inf).
#[derive(Clone, Copy, Debug)]
struct Slot {
    time: f64,
    id: u32,
    tag: u32,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            time: f64::INFINITY,
            id: u32::MAX,
            tag: 0,
        }
    }
}

const CAPACITY: usize = 8;
const TARGET_PER_BUCKET: f64 = 2.0;
const TUNE_EVERY: u64 = 1 << 16;
/// Events between two checks for an early retune.
const CHECK_EVERY: u64 = 1 << 8;
/// An early retune when more empty buckets than this per event were walked.
const MAX_EMPTY_PER_EVENT: u64 = 16;
/// Empty buckets walked one by one before skipping ahead in words.
const WALK_BEFORE_SKIP: u32 = 8;
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
    /// N - 1 (N fine buckets, a power of two).
    mask: u64,
    /// log2 of the epoch length E = N / 2.
    epoch_shift: u32,
    /// Current fine bucket (absolute index); no live entry lies before it.
    cur: u64,
    /// Fine range end (absolute bucket index), as f64 for the hot compare.
    limit_f: f64,
    /// Coarse range end (absolute bucket index), as f64.
    climit_f: f64,
    buckets: Vec<Bucket>,
    fill: Vec<u8>,
    in_calendar: usize,
    /// Head node of the list of each coarse epoch, M = coarse.len() (a
    /// power of two); NIL when empty.
    coarse: Vec<u32>,
    /// Nodes of the coarse lists (singly linked, pooled).
    cnodes: Vec<CNode>,
    /// Free nodes, as a stack of indices: taking one reads no node (a
    /// linked free list made every coarse push wait for a random read), and
    /// the most recently freed, likely cached, node is reused first.
    cfree: Vec<u32>,
    /// Per id: generation of its latest coarse entry, bumped whenever the id
    /// is filed in or leaves the coarse level (mod 256: a wrapped match is
    /// caught by the location check).
    cgen: Vec<u8>,
    /// Entries in the coarse lists, stale ones included.
    coarse_len: usize,
    heap: BinaryHeap<Reverse<HeapEntry>>,
    /// Raw heap top time * inv_width (a lower bound of the live heap
    /// minimum's bucket); +inf when the heap is empty.
    heap_k: f64,
    /// Raw heap top time (+inf when empty).
    heap_top: f64,
    n_ids: usize,
    pops: u64,
    tune_time: f64,
    tune_pops: u64,
    /// Fine buckets walked over while empty (diagnostics and retuning).
    empty_steps: u64,
    tune_steps: u64,
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

/// `before` evaluated in full (no short circuit), for a select without a
/// branch.
#[inline(always)]
fn before_branchless(a: (f64, u32), b: (f64, u32)) -> bool {
    (a.0 < b.0) | ((a.0 == b.0) & (a.1 < b.1))
}

impl CalendarQueue {
    /// Queue ids 0..n at the times `store` holds for them (their locations
    /// are overwritten); the bucket width comes from the queued times.
    pub fn build<S: Store>(n: usize, store: &mut S) -> Self {
        Self::build_with_rate(n, store, 0.0)
    }

    /// As `build`, given the expected number of events per unit time (the
    /// total propensity), from which the bucket width is set; a `rate` that
    /// is not finite and positive is ignored.
    pub fn build_with_rate<S: Store>(n: usize, store: &mut S, rate: f64) -> Self {
        let n_buckets = (n.max(1) / 16).next_power_of_two().clamp(256, 1 << 15);
        let n_coarse = (2 * n_buckets).clamp(1024, 1 << 14);
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
            epoch_shift: n_buckets.trailing_zeros() - 1,
            cur: 0,
            limit_f: 0.0,
            climit_f: 0.0,
            buckets: huge_vec(n_buckets),
            fill: vec![0; n_buckets],
            in_calendar: 0,
            coarse: vec![NIL; n_coarse],
            cnodes: huge_nodes(n + 1025),
            cfree: Vec::new(),
            cgen: vec![0; n],
            coarse_len: 0,
            heap: BinaryHeap::from(heap),
            heap_k: f64::INFINITY,
            heap_top: f64::INFINITY,
            n_ids: n,
            pops: 0,
            tune_time: 0.0,
            tune_pops: 0,
            empty_steps: 0,
            tune_steps: 0,
            hint: (u32::MAX, 0),
        };
        if rate.is_finite() && rate > 0.0 {
            q.set_width(TARGET_PER_BUCKET / rate);
        } else if finite.len() >= 2 {
            // The times of the earliest n_buckets entries, spread evenly.
            let k = finite.len().min(n_buckets) - 1;
            finite.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
            let hi = finite[k];
            let lo = finite[..k].iter().fold(hi, |m, &t| m.min(t));
            q.set_width((hi - lo) / k as f64 * TARGET_PER_BUCKET);
        } else if let Some(&t) = finite.first() {
            q.set_width(t);
        }
        q.refresh_heap_k();
        q.rebase(store, 0);
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
        self.refresh_heap_k();
    }

    fn epoch_len(&self) -> u64 {
        1 << self.epoch_shift
    }

    /// Set cur (with no live fine or coarse entry before the end of its
    /// epoch + 1) and the range ends that follow from it, then bring heap
    /// entries that now fall inside the coarse range in.
    fn rebase<S: Store>(&mut self, store: &mut S, cur: u64) {
        self.cur = cur;
        self.set_limits();
        self.migrate(store);
    }

    fn set_limits(&mut self) {
        let epoch = self.cur >> self.epoch_shift;
        self.limit_f = ((epoch + 2) << self.epoch_shift) as f64;
        self.climit_f = ((epoch + 2 + self.coarse.len() as u64) << self.epoch_shift) as f64;
    }

    #[inline(always)]
    fn refresh_heap_k(&mut self) {
        self.heap_top = match self.heap.peek() {
            Some(Reverse(top)) => top.time,
            None => f64::INFINITY,
        };
        self.heap_k = self.heap_top * self.inv_width;
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
            self.refresh_heap_k();
        }
        (f64::INFINITY, 0)
    }

    #[cold]
    #[inline(never)]
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
        self.refresh_heap_k();
    }

    /// File id at `time` (finite, >= the time of bucket cur): fine bucket,
    /// coarse list or heap.
    #[inline(always)]
    fn place<S: Store>(&mut self, store: &mut S, id: usize, time: f64) {
        let k = time * self.inv_width;
        if k < self.limit_f {
            debug_assert!(k >= 0.0);
            // SAFETY: time is finite and >= 0 (callers), so 0 <= k < limit_f
            // (at most MAX_BUCKET plus two epochs), far inside i64: the plain
            // conversion, without the saturating checks of `as`.
            let b = (unsafe { k.to_int_unchecked::<i64>() } as u64 & self.mask) as usize;
            // SAFETY: b <= mask < fill.len() == buckets.len().
            let f = unsafe { *self.fill.get_unchecked(b) } as usize;
            if f < CAPACITY {
                self.push(store, b, f, id, time);
                return;
            }
        } else if k < self.climit_f {
            let c = (k as i64 as u64 >> self.epoch_shift) as usize & (self.coarse.len() - 1);
            self.coarse_push(store, c, id, time);
            return;
        }
        self.heap_insert(store, id, time);
    }

    #[inline(always)]
    fn coarse_push<S: Store>(&mut self, store: &mut S, c: usize, id: usize, time: f64) {
        store.set(id, time, IN_COARSE);
        let gen = self.cgen[id].wrapping_add(1);
        self.cgen[id] = gen;
        let node = CNode {
            id: id as u32,
            next: self.coarse[c],
            gen: u32::from(gen) | (c as u32) << 8,
        };
        let k = if let Some(k) = self.cfree.pop() {
            self.cnodes[k as usize] = node;
            k
        } else {
            self.cnodes.push(node);
            (self.cnodes.len() - 1) as u32
        };
        self.coarse[c] = k;
        self.coarse_len += 1;
        if self.coarse_len > self.n_ids + 1024 {
            self.compact_coarse(store);
        }
    }

    /// Whether a coarse node is its id's live entry; reads the store only
    /// when the generation matches.
    #[inline(always)]
    fn coarse_live<S: Store>(&self, store: &S, node: CNode) -> bool {
        self.cgen[node.id as usize] == node.gen as u8 && store.loc(node.id as usize) == IN_COARSE
    }

    #[cold]
    #[inline(never)]
    fn compact_coarse<S: Store>(&mut self, store: &mut S) {
        // One sequential pass over the node pool (not a walk along the
        // lists, which missed the cache at every node): relink the live
        // nodes into their lists, free the others.
        self.coarse.fill(NIL);
        self.cfree.clear();
        let mut len = 0;
        for k in 0..self.cnodes.len() {
            let node = self.cnodes[k];
            if node.id != NIL && self.coarse_live(store, node) {
                let c = (node.gen >> 8) as usize;
                self.cnodes[k].next = self.coarse[c];
                self.coarse[c] = k as u32;
                len += 1;
            } else {
                self.cnodes[k].id = NIL;
                self.cfree.push(k as u32);
            }
        }
        self.coarse_len = len;
    }

    /// Move heap entries that now fall inside the fine or coarse range (while
    /// their fine bucket has room).
    #[cold]
    #[inline(never)]
    fn migrate<S: Store>(&mut self, store: &mut S) {
        while self.heap_k < self.climit_f {
            let (t, id) = self.heap_peek(store);
            let k = t * self.inv_width;
            if k >= self.climit_f {
                return;
            }
            if k < self.limit_f {
                let b = ((k as i64 as u64) & self.mask) as usize;
                let f = self.fill[b] as usize;
                if f >= CAPACITY {
                    return;
                }
                self.heap.pop();
                self.refresh_heap_k();
                self.push(store, b, f, id, t);
            } else {
                self.heap.pop();
                self.refresh_heap_k();
                let c = (k as i64 as u64 >> self.epoch_shift) as usize & (self.coarse.len() - 1);
                self.coarse_push(store, c, id, t);
            }
        }
    }

    /// cur has just entered a new epoch: spread the coarse list of the
    /// epoch after it into the fine buckets, and let heap entries into the
    /// coarse epoch that joined the range.
    #[cold]
    #[inline(never)]
    fn next_epoch<S: Store>(&mut self, store: &mut S) {
        self.set_limits();
        let epoch = self.cur >> self.epoch_shift;
        let c = (epoch + 1) as usize & (self.coarse.len() - 1);
        let mut k = std::mem::replace(&mut self.coarse[c], NIL);
        while k != NIL {
            let node = self.cnodes[k as usize];
            if let Some(next) = self.cnodes.get(node.next as usize) {
                prefetch_ptr(next);
            }
            self.cnodes[k as usize].id = NIL;
            self.cfree.push(k);
            self.coarse_len -= 1;
            if self.coarse_live(store, node) {
                // Within the fine range now (or the heap if its bucket is full).
                let id = node.id as usize;
                self.place(store, id, store.time(id));
            }
            k = node.next;
        }
        self.migrate(store);
    }

    /// The fine calendar is empty at and after cur: move on to the next
    /// epoch holding coarse entries, or to the heap minimum; or report
    /// (inf, 0) when every entry lies after bucket `bound_k` (cur stays).
    #[cold]
    #[inline(never)]
    fn advance_idle<S: Store>(&mut self, store: &mut S, bound_k: f64) -> Option<(f64, usize)> {
        let (th, ih) = self.heap_peek(store);
        let kh = th * self.inv_width;
        // Coarse entries lie at or after the fine range end.
        let first = if self.coarse_len > 0 {
            kh.min(self.limit_f)
        } else {
            kh
        };
        if bound_k < first {
            return Some((f64::INFINITY, 0));
        }
        if self.coarse_len > 0 {
            let next = ((self.cur >> self.epoch_shift) + 1) << self.epoch_shift;
            if kh >= next as f64 {
                self.cur = next;
                self.next_epoch(store);
                return None;
            }
        }
        if !th.is_finite() {
            return Some((f64::INFINITY, 0));
        }
        if kh >= MAX_BUCKET {
            // Nothing else is queued before the heap minimum: rescale.
            self.rebuild_at(store, th / 1.0e15, th);
            return None;
        }
        let k = kh as u64;
        if k <= self.cur {
            return Some((th, ih));
        }
        if self.coarse_len == 0 {
            self.rebase(store, k);
        } else {
            // The heap minimum comes before the next epoch boundary.
            self.cur = k;
        }
        None
    }

    /// Put id in bucket b, which holds f < CAPACITY entries.
    #[inline(always)]
    fn push<S: Store>(&mut self, store: &mut S, b: usize, f: usize, id: usize, time: f64) {
        debug_assert!(f < CAPACITY && b < self.buckets.len());
        let tag = store.tag(id);
        // SAFETY: b < buckets.len() == fill.len() (callers mask it) and
        // f < CAPACITY.
        unsafe {
            *self.buckets.get_unchecked_mut(b).0.get_unchecked_mut(f) = Slot {
                time,
                id: id as u32,
                tag,
            };
            *self.fill.get_unchecked_mut(b) = f as u8 + 1;
        }
        store.set(id, time, (b * CAPACITY + f) as u32);
        self.in_calendar += 1;
    }

    /// Skip a run of empty buckets after cur, eight at a time, up to the end
    /// of the epoch and not past the heap top's bucket nor bucket `bound_k`.
    #[cold]
    #[inline(never)]
    fn skip_empty(&mut self, bound_k: f64) {
        let end = ((self.cur >> self.epoch_shift) + 1) << self.epoch_shift;
        let mut stop = if self.heap_k < end as f64 {
            (self.heap_k as u64).max(self.cur)
        } else {
            end
        };
        if bound_k < stop as f64 {
            stop = (bound_k as u64).max(self.cur);
        }
        let mut k = self.cur;
        while k < stop {
            let b = (k & self.mask) as usize;
            if k.is_multiple_of(8) && k + 8 <= stop {
                let word = u64::from_ne_bytes(self.fill[b..b + 8].try_into().unwrap_or([1; 8]));
                if word == 0 {
                    k += 8;
                    continue;
                }
            }
            if self.fill[b] != 0 {
                break;
            }
            k += 1;
        }
        self.empty_steps += k - self.cur;
        self.cur = k;
    }

    /// The earliest (time, id); (inf, 0) when nothing is scheduled.
    #[inline(always)]
    pub fn peek<S: Store>(&mut self, store: &mut S) -> (f64, usize) {
        self.peek_before(store, f64::INFINITY)
    }

    /// As `peek`, but when every entry is later than `bound` it may return
    /// (inf, 0) instead, and it never moves the current bucket past the
    /// bucket of `bound`: a caller that merges this queue with another one
    /// whose minimum is `bound` can then file new times >= `bound` here.
    #[inline(always)]
    pub fn peek_before<S: Store>(&mut self, store: &mut S, bound: f64) -> (f64, usize) {
        let b = (self.cur & self.mask) as usize;
        // SAFETY: b <= mask < fill.len() == buckets.len().
        let f = unsafe { *self.fill.get_unchecked(b) } as usize;
        if f > 0 {
            return self.bucket_min(store, b, f);
        }
        // Most walks end at the very next bucket: take that step here, and
        // leave every other case (epoch ends, the heap, the bound, longer
        // runs) to `peek_walk`. The conditions are the ones `peek_walk`
        // checks before the same step.
        let next = self.cur + 1;
        let b1 = (next & self.mask) as usize;
        // SAFETY: b1 <= mask < fill.len().
        let f1 = unsafe { *self.fill.get_unchecked(b1) } as usize;
        if f1 > 0
            && next & (self.epoch_len() - 1) != 0
            && self.heap_k >= next as f64
            && (next as f64) <= bound * self.inv_width
        {
            self.empty_steps += 1;
            self.cur = next;
            return self.bucket_min(store, b1, f1);
        }
        self.peek_walk(store, bound)
    }

    /// The minimum of bucket b (holding f > 0 entries) or of the heap.
    #[inline(always)]
    fn bucket_min<S: Store>(&mut self, store: &mut S, b: usize, f: usize) -> (f64, usize) {
        debug_assert!(b < self.buckets.len() && f > 0 && f <= CAPACITY);
        // SAFETY: b < buckets.len() (masked) and f <= CAPACITY.
        let bucket = unsafe { self.buckets.get_unchecked(b).0.get_unchecked(..f) };
        // The runner-up (index into the bucket; 0 stands in while f == 1).
        let (mut best, mut best_k, mut second, mut second_k);
        if f == 1 {
            (best, best_k) = ((bucket[0].time, bucket[0].id), 0);
            (second, second_k) = ((f64::INFINITY, u32::MAX), 0);
        } else {
            // The first two entries ordered without a branch: which one is
            // earlier is a coin toss that a predictor misses half the time,
            // and most buckets hold two.
            let (e0, e1) = (
                (bucket[0].time, bucket[0].id),
                (bucket[1].time, bucket[1].id),
            );
            let k = usize::from(before_branchless(e1, e0));
            (best_k, second_k) = (k, 1 - k);
            best = (bucket[best_k].time, bucket[best_k].id);
            second = (bucket[second_k].time, bucket[second_k].id);
        }
        for (k, s) in bucket.iter().enumerate().skip(2) {
            let e = (s.time, s.id);
            if before(e, best) {
                second = best;
                second_k = best_k;
                best = e;
                best_k = k;
            } else if before(e, second) {
                second = e;
                second_k = k;
            }
        }
        // Hint: the bucket's runner-up, else the least of the first two
        // entries of the next bucket, else the first of the one after.
        let h = if f > 1 {
            &bucket[second_k]
        } else {
            let b1 = ((self.cur + 1) & self.mask) as usize;
            let b2 = ((self.cur + 2) & self.mask) as usize;
            // SAFETY: b1, b2 <= mask < fill.len() == buckets.len().
            unsafe {
                let next = &self.buckets.get_unchecked(b1).0;
                match *self.fill.get_unchecked(b1) {
                    0 => self.buckets.get_unchecked(b2).0.get_unchecked(0),
                    1 => next.get_unchecked(0),
                    _ => {
                        let (a, c) = (next.get_unchecked(0), next.get_unchecked(1));
                        if before((c.time, c.id), (a.time, a.id)) {
                            c
                        } else {
                            a
                        }
                    }
                }
            }
        };
        self.hint = (h.id, h.tag);
        if best.0 < self.heap_top {
            return (best.0, best.1 as usize);
        }
        let (th, ih) = self.heap_peek(store);
        if before((th, ih as u32), best) {
            return (th, ih);
        }
        (best.0, best.1 as usize)
    }

    /// `peek` when bucket cur is empty: walk (and skip) to the next
    /// non-empty bucket, moving through epochs, or to the heap minimum.
    #[inline(never)]
    fn peek_walk<S: Store>(&mut self, store: &mut S, bound: f64) -> (f64, usize) {
        let bound_k = bound * self.inv_width;
        let mut walked = 0u32;
        loop {
            let b = (self.cur & self.mask) as usize;
            let f = self.fill[b] as usize;
            if f > 0 {
                return self.bucket_min(store, b, f);
            }
            let next = self.cur + 1;
            // An overflowed entry may be due before the next bucket starts.
            if self.heap_k < next as f64 {
                let (th, ih) = self.heap_peek(store);
                if th * self.inv_width < next as f64 {
                    return (th, ih);
                }
            }
            if self.in_calendar == 0 {
                if let Some(r) = self.advance_idle(store, bound_k) {
                    return r;
                }
                continue;
            }
            if next as f64 > bound_k {
                // Every entry is later than `bound`: stay at or before it.
                return (f64::INFINITY, 0);
            }
            self.empty_steps += 1;
            self.cur = next;
            if next & (self.epoch_len() - 1) == 0 {
                self.next_epoch(store);
            } else {
                walked += 1;
                if walked >= WALK_BEFORE_SKIP {
                    walked = 0;
                    self.skip_empty(bound_k);
                    if self.cur & (self.epoch_len() - 1) == 0 {
                        self.next_epoch(store);
                    }
                }
            }
        }
    }

    /// (id, tag) of a subvolume likely to fire soon after the one `peek` last
    /// returned (possibly stale or wrong: only for prefetching).
    #[inline(always)]
    pub fn hint(&self) -> (u32, u32) {
        self.hint
    }

    /// Fine buckets `peek` has walked over while empty, since the start.
    pub fn empty_steps(&self) -> u64 {
        self.empty_steps
    }

    /// Set the next time of `id` (>= the current time; +inf for never).
    #[inline(always)]
    pub fn update<S: Store>(&mut self, store: &mut S, id: usize, time: f64) {
        if time.is_finite() {
            self.update_finite(store, id, time);
        } else {
            self.update_idle(store, id);
        }
    }

    /// `update` with a finite time.
    #[inline(always)]
    pub fn update_finite<S: Store>(&mut self, store: &mut S, id: usize, time: f64) {
        debug_assert!(time.is_finite());
        self.remove(store, id);
        self.place(store, id, time);
    }

    /// `update` with time +inf: id has no next event.
    #[inline(always)]
    pub fn update_idle<S: Store>(&mut self, store: &mut S, id: usize) {
        self.remove(store, id);
        store.set(id, f64::INFINITY, IN_HEAP);
    }

    /// Take id out of its fine bucket, or make its coarse entry stale; its
    /// heap entry (if any) goes stale once its time or location changes.
    #[inline(always)]
    fn remove<S: Store>(&mut self, store: &mut S, id: usize) {
        let loc = store.loc(id);
        if loc < IN_COARSE {
            // Take id out of its bucket (swap with the bucket's last entry).
            let loc = loc as usize;
            let b = loc / CAPACITY;
            debug_assert!(b < self.fill.len());
            // SAFETY: loc was set by `push` to b * CAPACITY + f with b < fill.len().
            let f = unsafe { *self.fill.get_unchecked(b) } as usize;
            debug_assert!(f > 0 && loc < b * CAPACITY + f);
            let last = f - 1;
            let bucket = unsafe { &mut self.buckets.get_unchecked_mut(b).0 };
            // Move the last entry into the hole and clear the last slot,
            // without a branch: when id itself is last, it is "moved" onto
            // itself and its location is set below anyway.
            let moved = bucket[last % CAPACITY];
            bucket[loc % CAPACITY] = moved;
            bucket[last % CAPACITY] = Slot::default();
            store.set_loc(moved.id as usize, loc as u32);
            unsafe { *self.fill.get_unchecked_mut(b) = last as u8 };
            self.in_calendar -= 1;
        } else if loc == IN_COARSE {
            // Its coarse entry goes stale without a look at its record.
            self.cgen[id] = self.cgen[id].wrapping_add(1);
        }
    }

    /// Called once per fired event at time `now`; retunes the width from the
    /// event rate, every TUNE_EVERY events or early when `peek` walks many
    /// empty buckets.
    #[inline(always)]
    pub fn note_event<S: Store>(&mut self, store: &mut S, now: f64) {
        self.pops += 1;
        if self.pops.is_multiple_of(CHECK_EVERY) {
            self.check_tune(store, now);
        }
    }

    #[cold]
    #[inline(never)]
    fn check_tune<S: Store>(&mut self, store: &mut S, now: f64) {
        let events = self.pops - self.tune_pops;
        let walked = self.empty_steps - self.tune_steps;
        if events >= TUNE_EVERY || walked > MAX_EMPTY_PER_EVENT * events {
            self.retune(store, now);
        }
    }

    #[cold]
    fn retune<S: Store>(&mut self, store: &mut S, now: f64) {
        let span = now - self.tune_time;
        let events = self.pops - self.tune_pops;
        self.tune_time = now;
        self.tune_pops = self.pops;
        self.tune_steps = self.empty_steps;
        if span > 0.0 && events > 0 {
            let ideal = span / events as f64 * TARGET_PER_BUCKET;
            if ideal > 2.0 * self.width || ideal < 0.5 * self.width {
                self.rebuild_at(store, ideal, now);
            }
        }
    }

    /// Refile every fine and coarse entry for a new width, with cur at the
    /// bucket of `now` (no live entry is earlier).
    fn rebuild_at<S: Store>(&mut self, store: &mut S, width: f64, now: f64) {
        let mut moved = Vec::with_capacity(self.in_calendar);
        for b in 0..self.fill.len() {
            let f = self.fill[b] as usize;
            moved.extend_from_slice(&self.buckets[b].0[..f]);
            self.buckets[b] = Bucket::default();
            self.fill[b] = 0;
        }
        self.in_calendar = 0;
        for c in 0..self.coarse.len() {
            let mut k = std::mem::replace(&mut self.coarse[c], NIL);
            while k != NIL {
                let node = self.cnodes[k as usize];
                if self.coarse_live(store, node) {
                    let id = node.id as usize;
                    store.set_loc(id, IN_HEAP);
                    moved.push(Slot {
                        time: store.time(id),
                        id: node.id,
                        tag: 0,
                    });
                }
                k = node.next;
            }
        }
        self.cnodes.clear();
        self.cfree.clear();
        self.coarse_len = 0;
        for s in &moved {
            store.set_loc(s.id as usize, IN_HEAP);
        }
        self.set_width(width);
        let k = now * self.inv_width;
        self.cur = if k < MAX_BUCKET { k as u64 } else { 0 };
        self.set_limits();
        for s in moved {
            self.place(store, s.id as usize, s.time);
        }
        self.migrate(store);
    }

    /// Memory of the queue (buckets, coarse lists and heap), in bytes.
    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
            + self.fill.capacity()
            + self.coarse.capacity() * std::mem::size_of::<u32>()
            + self.cnodes.capacity() * std::mem::size_of::<CNode>()
            + self.cfree.capacity() * std::mem::size_of::<u32>()
            + self.cgen.capacity()
            + self.heap.capacity() * std::mem::size_of::<Reverse<HeapEntry>>()
    }
}

/// n default buckets, on huge pages where the system allows (the ring is
/// read and written at random offsets ahead of the current bucket).
fn huge_vec(n: usize) -> Vec<Bucket> {
    let mut v: Vec<Bucket> = Vec::with_capacity(n);
    crate::memory::advise_huge_pages(v.as_ptr().cast(), n * std::mem::size_of::<Bucket>());
    v.resize(n, Bucket::default());
    v
}

/// An empty node pool with room for its largest size (compaction keeps it
/// at most n + 1025 nodes), on huge pages where the system allows: nodes are
/// written at random as ids are filed.
fn huge_nodes(cap: usize) -> Vec<CNode> {
    let v: Vec<CNode> = Vec::with_capacity(cap);
    crate::memory::advise_huge_pages(v.as_ptr().cast(), cap * std::mem::size_of::<CNode>());
    v
}

/// Hint the CPU to load the cache line holding `r` (no-op elsewhere).
#[inline(always)]
fn prefetch_ptr<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and has no architectural effect.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
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

    /// Merge the calendar with a second queue (a plain list here), as the
    /// NSM merges it with its static heap: `peek_before(bound)` with bound =
    /// the other minimum must give the exact calendar minimum whenever that
    /// is <= bound, and after an event of the other queue at time `now` the
    /// calendar must accept new times anywhere from `now` on (it never
    /// walked past the bound). Checked against brute force at every step.
    #[test]
    fn merged_with_another_queue_stays_exact() {
        for n in [1usize, 40, 3000] {
            let mut rng = Stream::new(5, n as u64);
            let mut times: Vec<f64> = (0..n).map(|_| rng.exp1() * 1e-3).collect();
            // Eight other entries firing at about a tenth of the calendar's rate.
            let other_mean = |scale: f64| scale * 80.0 / n as f64;
            let mut others: Vec<f64> = (0..8).map(|_| rng.exp1() * other_mean(1e-3)).collect();
            let mut store = VecStore::new(&times);
            let mut q = CalendarQueue::build(n, &mut store);
            let mut other_first = 0;
            for step in 0..40_000 {
                let (bound, ob) = others
                    .iter()
                    .enumerate()
                    .map(|(k, &t)| (t, k))
                    .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
                let (t, id) = q.peek_before(&mut store, bound);
                let best = times
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
                    .unwrap();
                if *best.1 <= bound {
                    assert_eq!((t, id), (*best.1, best.0), "n {n} step {step}");
                } else {
                    assert!(t > bound, "n {n} step {step}: {t} <= bound {bound}");
                }
                let now = t.min(bound);
                if !now.is_finite() {
                    break;
                }
                let scale = if step < 20_000 { 1e-3 } else { 1e-6 };
                if bound < t {
                    // The other queue fires: it files calendar times from
                    // `now` on, possibly before the calendar's minimum.
                    other_first += 1;
                    others[ob] = now + rng.exp1() * other_mean(scale);
                    for _ in 0..3 {
                        let k = (rng.uniform() * n as f64) as usize;
                        let tk = if rng.uniform() < 0.1 {
                            f64::INFINITY
                        } else {
                            now + scale * 0.01 * rng.exp1()
                        };
                        q.update(&mut store, k, tk);
                        times[k] = tk;
                    }
                } else {
                    q.note_event(&mut store, now);
                    let tk = if rng.uniform() < 0.02 {
                        f64::INFINITY
                    } else if rng.uniform() < 0.05 {
                        now + scale * 3e3 * rng.exp1()
                    } else {
                        now + scale * rng.exp1()
                    };
                    q.update(&mut store, id, tk);
                    times[id] = tk;
                }
            }
            assert!(
                other_first > 100,
                "n {n}: the other queue fired only {other_first} times"
            );
        }
    }

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
            let mut saw_coarse = false;
            for step in 0..60_000 {
                saw_coarse |= q.coarse_len > 0;
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
                } else if rng.uniform() < 0.05 {
                    // Slow ids: the coarse level.
                    now + scale * 3e3 * rng.exp1()
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
                // Every location is consistent, unused slots are cleared.
                if step % 4096 == 0 {
                    for (b, bucket) in q.buckets.iter().enumerate() {
                        let f = q.fill[b] as usize;
                        assert!(bucket.0[f..].iter().all(|s| s.time == f64::INFINITY));
                    }
                    for (id, &t) in times.iter().enumerate() {
                        assert_eq!(store.time(id), t);
                        let loc = store.loc(id);
                        if loc < IN_COARSE {
                            let b = loc as usize / CAPACITY;
                            assert!((loc as usize % CAPACITY) < q.fill[b] as usize);
                            let s = q.buckets[b].0[loc as usize % CAPACITY];
                            assert_eq!((s.time, s.id as usize), (t, id));
                        } else if loc == IN_COARSE {
                            let c = ((t * q.inv_width) as u64 >> q.epoch_shift) as usize
                                & (q.coarse.len() - 1);
                            let mut k = q.coarse[c];
                            let mut found = false;
                            while k != NIL {
                                let node = q.cnodes[k as usize];
                                found |= node.id as usize == id && node.gen as u8 == q.cgen[id];
                                k = node.next;
                            }
                            assert!(found, "n {n} step {step}: id {id} not in its coarse list");
                        }
                    }
                }
            }
            assert!(
                saw_coarse || n < 300,
                "n {n}: the coarse level was not exercised"
            );
        }
    }
}
