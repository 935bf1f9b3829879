//! Independent jobs on a few threads, their results in order: layer
//! headers read side by side (`surgery`), blobs copied side by side
//! (`cas::copy`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Run `job(0..n)` on up to `threads` threads, each taking the next index
/// until none is left or a job has failed. The results in index order, or
/// the first error in index order; an index skipped after a failure (with
/// no earlier error to report) gives `skipped(index)`.
pub(crate) fn in_order<T: Send, E: Send>(
    n: usize,
    threads: usize,
    job: impl Fn(usize) -> Result<T, E> + Sync,
    skipped: impl FnOnce(usize) -> E,
) -> Result<Vec<T>, E> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<T, E>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = job(i);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    let mut out = Vec::with_capacity(n);
    let mut missing = None;
    for (i, slot) in slots.into_iter().enumerate() {
        match slot.into_inner().ok().flatten() {
            Some(r) => out.push(r?),
            None => missing = missing.or(Some(i)),
        }
    }
    match missing {
        Some(i) => Err(skipped(i)),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_in_order_and_the_first_error_in_order() {
        let ok: Result<Vec<usize>, String> =
            in_order(50, 3, |i| Ok(i * 2), |i| format!("skip {i}"));
        assert_eq!(ok, Ok((0..50).map(|i| i * 2).collect()));
        let err: Result<Vec<usize>, String> = in_order(
            50,
            3,
            |i| {
                if i == 7 || i == 30 {
                    Err(format!("bad {i}"))
                } else {
                    Ok(i)
                }
            },
            |i| format!("skip {i}"),
        );
        assert_eq!(err, Err("bad 7".to_string()));
    }
}
