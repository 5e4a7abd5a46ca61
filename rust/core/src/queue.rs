//! Indexed binary min-heap of next-event times, one entry per subvolume.
//!
//! `update` moves one entry in O(log N); no operation touches all entries
//! except `build`. Ties are broken by subvolume index so the order of events is
//! a pure function of the times (determinism does not depend on heap history).

#[derive(Clone, Copy, Debug)]
struct Entry {
    time: f64,
    id: u32,
}

impl Entry {
    #[inline(always)]
    fn before(&self, other: &Entry) -> bool {
        self.time < other.time || (self.time == other.time && self.id < other.id)
    }
}

#[derive(Clone, Debug, Default)]
pub struct EventQueue {
    heap: Vec<Entry>,
    position: Vec<u32>,
}

impl EventQueue {
    /// Heapify `times` (index = subvolume) in O(N).
    pub fn build(times: &[f64]) -> Self {
        let heap: Vec<Entry> = times
            .iter()
            .enumerate()
            .map(|(id, &time)| Entry {
                time,
                id: id as u32,
            })
            .collect();
        let mut q = EventQueue {
            position: (0..heap.len() as u32).collect(),
            heap,
        };
        if q.heap.len() > 1 {
            for p in (0..q.heap.len() / 2).rev() {
                q.sift_down(p);
            }
        }
        q
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest (time, subvolume).
    #[inline(always)]
    pub fn peek(&self) -> (f64, usize) {
        match self.heap.first() {
            Some(e) => (e.time, e.id as usize),
            None => (f64::INFINITY, 0),
        }
    }

    #[inline(always)]
    pub fn time_of(&self, id: usize) -> f64 {
        self.heap[self.position[id] as usize].time
    }

    #[inline]
    pub fn update(&mut self, id: usize, time: f64) {
        let p = self.position[id] as usize;
        let old = self.heap[p].time;
        self.heap[p].time = time;
        if time < old {
            self.sift_up(p);
        } else {
            self.sift_down(p);
        }
    }

    #[inline]
    fn sift_up(&mut self, mut p: usize) {
        let item = self.heap[p];
        while p > 0 {
            let parent = (p - 1) / 2;
            let pe = self.heap[parent];
            if !item.before(&pe) {
                break;
            }
            self.heap[p] = pe;
            self.position[pe.id as usize] = p as u32;
            p = parent;
        }
        self.heap[p] = item;
        self.position[item.id as usize] = p as u32;
    }

    #[inline]
    fn sift_down(&mut self, mut p: usize) {
        let n = self.heap.len();
        let item = self.heap[p];
        loop {
            let left = 2 * p + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.heap[right].before(&self.heap[left]) {
                right
            } else {
                left
            };
            let ce = self.heap[child];
            if !ce.before(&item) {
                break;
            }
            self.heap[p] = ce;
            self.position[ce.id as usize] = p as u32;
            p = child;
        }
        self.heap[p] = item;
        self.position[item.id as usize] = p as u32;
    }

    /// Heap bytes per subvolume (for the memory report).
    pub fn bytes_per_entry() -> usize {
        std::mem::size_of::<Entry>() + std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn pops_in_time_order_under_random_updates() {
        let mut rng = Stream::new(1, 0);
        let n = 257;
        let mut times: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        times[5] = f64::INFINITY;
        let mut q = EventQueue::build(&times);
        for _ in 0..10_000 {
            let id = (rng.uniform() * n as f64) as usize;
            let t = if rng.uniform() < 0.1 {
                f64::INFINITY
            } else {
                rng.uniform()
            };
            q.update(id, t);
            times[id] = t;
            let (tmin, imin) = q.peek();
            let best = times
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.partial_cmp(b.1).unwrap().then(a.0.cmp(&b.0)))
                .unwrap();
            assert_eq!((tmin, imin), (*best.1, best.0));
            assert_eq!(q.time_of(id), t);
        }
    }
}
