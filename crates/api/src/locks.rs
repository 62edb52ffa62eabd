//! Poison-tolerant locking. A panic while a lock is held poisons it; every later `expect` on it
//! would then panic too, turning one failed request or loop run into a dead server. The data
//! under our locks is either rebuilt by whoever panicked next (the cache reloads, a snapshot
//! rebuilds: see `state/cache.rs` and `state/snapshots.rs`) or is a plain map that a panic cannot leave
//! half-written, so taking the guard out of the poison is always right here.
//!
//! Lock order, everywhere in the control plane: a cluster's scheduler-snapshot lock, then the
//! cache's lock (`Cache::read`, or the follower's write), then the snapshot marks. The maps of
//! subscribers, snapshots and loop states are leaves: nothing else is taken while they are held.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// `Mutex::get_mut`, through poison.
pub fn get_mut<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_hands_out_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(2));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = l2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        assert_eq!(*lock(&m), 1);
        assert_eq!(*read(&l), 2);
        *write(&l) = 3;
        assert_eq!(*read(&l), 3);
    }
}
