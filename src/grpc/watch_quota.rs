//! `--max-watch-streams-per-caller`: how many WatchSession streams one
//! `--callers-file` caller may hold open, so one caller can't take every
//! slot. Only callers with a stream open are remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct WatchQuota {
    per_caller: usize,
    open: Mutex<HashMap<String, usize>>,
}

/// One open stream of a caller; gives its place back when dropped.
pub struct QuotaSlot {
    quota: Arc<WatchQuota>,
    caller: String,
}

impl WatchQuota {
    pub fn new(per_caller: usize) -> Arc<Self> {
        Arc::new(WatchQuota {
            per_caller,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more stream of `caller`, unless it holds its quota.
    pub fn admit(self: &Arc<Self>, caller: String) -> Option<QuotaSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(caller.clone()).or_default();
        if *count >= self.per_caller {
            if *count == 0 {
                open.remove(&caller);
            }
            return None;
        }
        *count += 1;
        Some(QuotaSlot {
            quota: self.clone(),
            caller,
        })
    }
}

impl Drop for QuotaSlot {
    fn drop(&mut self) {
        let mut open = self.quota.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_quota_and_gets_places_back() {
        let quota = WatchQuota::new(2);
        let a1 = quota.admit("a".into()).unwrap();
        let _a2 = quota.admit("a".into()).unwrap();
        assert!(quota.admit("a".into()).is_none());
        let _b = quota.admit("b".into()).unwrap();
        drop(a1);
        assert!(quota.admit("a".into()).is_some());
        drop(_b);
        assert!(
            !quota.open.lock().unwrap().contains_key("b"),
            "forgotten at 0"
        );
    }
}
