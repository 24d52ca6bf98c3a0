//! The feed-forward expert's cache of recent forward activations, row by row.
//!
//! A learner calls Backward on the rows it has just sent to Forward. Backward is stateless on
//! the wire (the caller sends the inputs again), so without a cache the expert runs its forward
//! pass a second time: two of the eight matrix products of a forward+backward pair. With it, a
//! Backward whose every row was run forward recently, and whose weights have taken at most
//! `max_steps` SGD steps since, takes the activations from the cache.
//!
//! Rows are keyed by a hash of their bits and a hit compares the stored input row with the new
//! one, so a collision can only cost a recomputation, never a wrong activation. The cache holds
//! at most `capacity` rows and forgets the oldest first.

use std::collections::{HashMap, VecDeque};

/// What one row left behind: its input `x` (d), the pre-activation `a` (h), `GELU(a)` (h), the
/// normalised residual (d) and `1 / std`, in one buffer.
struct Row {
    generation: u64,
    step: u64,
    data: Vec<f32>,
}

/// Activations of whole rows taken from the cache.
pub(crate) struct Found {
    /// Pre-activations (n x h).
    pub a: Vec<f32>,
    /// `GELU(a)` (n x h).
    pub g: Vec<f32>,
    /// Normalised residuals (n x d).
    pub xhat: Vec<f32>,
    /// `1 / std` per row.
    pub inv: Vec<f32>,
}

/// Forward activations of recent rows of width `d` and inner width `h`.
pub(crate) struct ActivationCache {
    d: usize,
    h: usize,
    capacity: usize,
    max_steps: u64,
    rows: HashMap<u64, Row>,
    /// Insertion order as `(key, generation)`; a key inserted again gets a new generation, so
    /// its older place in the order no longer evicts it.
    order: VecDeque<(u64, u64)>,
    generation: u64,
    /// Buffers of evicted rows, reused by the next inserts.
    spare: Vec<Vec<f32>>,
    hits: u64,
    misses: u64,
}

/// The activations of whole rows, as the backward pass reads them.
pub(crate) struct RowActivations<'a> {
    /// Input rows (n x d).
    pub x: &'a [f32],
    /// Pre-activations (n x h).
    pub a: &'a [f32],
    /// `GELU(a)` (n x h).
    pub g: &'a [f32],
    /// Normalised residuals (n x d).
    pub xhat: &'a [f32],
    /// `1 / std` per row.
    pub inv: &'a [f32],
}

/// The key of a row: a multiply-rotate hash of its bits (collisions are caught by comparing the
/// stored row).
fn key(row: &[f32]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = row.len() as u64;
    for pair in row.chunks(2) {
        let lo = u64::from(pair[0].to_bits());
        let hi = pair.get(1).map_or(0, |v| u64::from(v.to_bits()));
        h = (h.rotate_left(23) ^ (lo | hi << 32)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

impl ActivationCache {
    /// A cache of up to `capacity` rows whose activations are used for at most `max_steps`
    /// steps of the weights after they were computed.
    pub fn new(d: usize, h: usize, capacity: usize, max_steps: u64) -> ActivationCache {
        ActivationCache {
            d,
            h,
            capacity,
            max_steps,
            rows: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            spare: Vec::new(),
            hits: 0,
            misses: 0,
        }
    }

    fn row_len(&self) -> usize {
        2 * self.d + 2 * self.h + 1
    }

    /// Stores each row of `act`, computed with the weights after `step` steps.
    pub fn insert(&mut self, act: &RowActivations<'_>, step: u64) {
        let (d, h) = (self.d, self.h);
        if self.capacity == 0 || d == 0 {
            return;
        }
        let len = self.row_len();
        for (i, x) in act.x.chunks_exact(d).enumerate() {
            let k = key(x);
            let mut data = self
                .rows
                .remove(&k)
                .map(|r| r.data)
                .or_else(|| self.spare.pop())
                .unwrap_or_default();
            data.clear();
            data.reserve(len);
            data.extend_from_slice(x);
            data.extend_from_slice(&act.a[i * h..(i + 1) * h]);
            data.extend_from_slice(&act.g[i * h..(i + 1) * h]);
            data.extend_from_slice(&act.xhat[i * d..(i + 1) * d]);
            data.push(act.inv[i]);
            self.generation += 1;
            let generation = self.generation;
            self.rows.insert(
                k,
                Row {
                    generation,
                    step,
                    data,
                },
            );
            self.order.push_back((k, generation));
        }
        self.evict();
    }

    fn evict(&mut self) {
        while self.rows.len() > self.capacity {
            let Some((k, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .rows
                .get(&k)
                .is_some_and(|r| r.generation == generation)
                && let Some(r) = self.rows.remove(&k)
            {
                self.spare.push(r.data);
            }
        }
        // Entries of keys inserted again later are skipped above; drop them when they pile up.
        if self.order.len() > 2 * self.capacity.max(1) {
            let rows = &self.rows;
            self.order
                .retain(|(k, g)| rows.get(k).is_some_and(|r| r.generation == *g));
        }
        self.spare.truncate(64);
    }

    /// The activations of the rows of `x` (n x d) if every row is cached, computed at most
    /// `max_steps` steps before `step`.
    pub fn lookup(&mut self, x: &[f32], step: u64) -> Option<Found> {
        let (d, h) = (self.d, self.h);
        let rows: Option<Vec<&[f32]>> = (d > 0)
            .then(|| {
                x.chunks_exact(d)
                    .map(|row| {
                        let r = self.rows.get(&key(row))?;
                        let fresh = step.saturating_sub(r.step) <= self.max_steps;
                        (fresh && r.data[..d] == *row).then_some(&r.data[d..])
                    })
                    .collect()
            })
            .flatten();
        let Some(rows) = rows else {
            self.misses += 1;
            return None;
        };
        let n = rows.len();
        let mut found = Found {
            a: Vec::with_capacity(n * h),
            g: Vec::with_capacity(n * h),
            xhat: Vec::with_capacity(n * d),
            inv: Vec::with_capacity(n),
        };
        for data in rows {
            found.a.extend_from_slice(&data[..h]);
            found.g.extend_from_slice(&data[h..2 * h]);
            found.xhat.extend_from_slice(&data[2 * h..2 * h + d]);
            found.inv.push(data[2 * h + d]);
        }
        self.hits += 1;
        Some(found)
    }

    /// `(hits, misses)` of [`lookup`](Self::lookup) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Rows held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: usize = 3;
    const H: usize = 4;

    /// `(x, a, g, xhat, inv)` of some rows.
    type Rows = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

    /// Activations of `n` rows whose values are derived from `seed`.
    fn rows(n: usize, seed: f32) -> Rows {
        let f = |len: usize, k: f32| -> Vec<f32> {
            (0..len).map(|i| seed * 100.0 + k + i as f32).collect()
        };
        (
            f(n * D, 0.0),
            f(n * H, 0.1),
            f(n * H, 0.2),
            f(n * D, 0.3),
            f(n, 0.4),
        )
    }

    fn insert(c: &mut ActivationCache, n: usize, seed: f32, step: u64) {
        let (x, a, g, xhat, inv) = rows(n, seed);
        let act = RowActivations {
            x: &x,
            a: &a,
            g: &g,
            xhat: &xhat,
            inv: &inv,
        };
        c.insert(&act, step);
    }

    fn lookup(c: &mut ActivationCache, x: &[f32], step: u64) -> Option<Vec<f32>> {
        c.lookup(x, step)
            .map(|f| [f.a, f.g, f.xhat, f.inv].concat())
    }

    #[test]
    fn a_row_run_forward_is_found_with_its_activations() {
        let mut c = ActivationCache::new(D, H, 16, 4);
        insert(&mut c, 2, 1.0, 0);
        let (x, a, g, xhat, inv) = rows(2, 1.0);
        assert_eq!(lookup(&mut c, &x, 0), Some([a, g, xhat, inv].concat()));
        // The rows in another order, or one of them alone, are found as well.
        let swapped = [&x[D..], &x[..D]].concat();
        assert!(lookup(&mut c, &swapped, 0).is_some());
        assert!(lookup(&mut c, &x[D..], 0).is_some());
        assert_eq!(c.stats(), (3, 0));
    }

    #[test]
    fn an_unknown_row_stale_rows_and_a_changed_value_miss() {
        let mut c = ActivationCache::new(D, H, 16, 4);
        insert(&mut c, 2, 1.0, 10);
        let (x, ..) = rows(2, 1.0);
        let (other, ..) = rows(1, 2.0);
        // One unknown row among known ones misses the whole lookup.
        assert!(lookup(&mut c, &[&x[..], &other[..]].concat(), 10).is_none());
        // Four steps later still hits; five misses.
        assert!(lookup(&mut c, &x, 14).is_some());
        assert!(lookup(&mut c, &x, 15).is_none());
        // A value changed in its last bit misses.
        let mut y = x.clone();
        y[1] = f32::from_bits(y[1].to_bits() + 1);
        assert!(lookup(&mut c, &y, 10).is_none());
        assert_eq!(c.stats(), (1, 3));
    }

    #[test]
    fn the_oldest_rows_are_forgotten_first_and_a_reinserted_row_is_renewed() {
        let mut c = ActivationCache::new(D, H, 4, 100);
        insert(&mut c, 2, 1.0, 0); // rows r0, r1
        insert(&mut c, 2, 2.0, 0); // rows s0, s1: full
        insert(&mut c, 2, 1.0, 1); // r0, r1 again: renewed, nothing evicted
        assert_eq!(c.len(), 4);
        insert(&mut c, 2, 3.0, 1); // t0, t1 evict s0, s1 (the oldest), not r0, r1
        assert_eq!(c.len(), 4);
        let (r, ..) = rows(2, 1.0);
        let (s, ..) = rows(2, 2.0);
        let (t, ..) = rows(2, 3.0);
        assert!(lookup(&mut c, &r, 1).is_some());
        assert!(lookup(&mut c, &t, 1).is_some());
        assert!(lookup(&mut c, &s[..D], 1).is_none());
        assert!(lookup(&mut c, &s[D..], 1).is_none());
    }

    #[test]
    fn a_cache_of_no_rows_holds_nothing() {
        let mut c = ActivationCache::new(D, H, 0, 4);
        insert(&mut c, 2, 1.0, 0);
        let (x, ..) = rows(2, 1.0);
        assert_eq!(c.len(), 0);
        assert!(lookup(&mut c, &x, 0).is_none());
    }

    #[test]
    fn keys_differ_for_rows_that_differ() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [1.0f32, 2.0, 3.000_000_2];
        let c = [3.0f32, 2.0, 1.0];
        assert_ne!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_eq!(key(&a), key(&[1.0, 2.0, 3.0]));
    }
}
