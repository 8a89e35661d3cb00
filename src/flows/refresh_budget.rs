//! Refreshes per refresh-token family per minute, per node (`rate_limit_per_refresh_family`).
//!
//! At `/token` a hosted client's served requests count against the client, whose budget is sized
//! for all its people (30,000 a minute). One connection of one person needs a refresh about once
//! per access-token lifetime (a few a minute when several processes race); a family refreshed
//! hundreds of times a minute is a client in a loop or a thief minting access tokens inside the
//! grace window, and without this it could spend the whole client's budget. Counted in the
//! refresh transaction, before anything is written: a refused refresh changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

#[derive(Default)]
pub struct RefreshBudget {
    families: Mutex<HashMap<Uuid, (u64, u32)>>,
}

impl RefreshBudget {
    /// Counts one refresh of `family`; false once `per_minute` were counted this minute (0: no
    /// limit).
    pub fn spend(&self, family: Uuid, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let minute = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 60).unwrap_or(0);
        let mut families = self.families.lock().expect("refresh budget lock");
        if families.len() > 100_000 {
            families.retain(|_, (m, _)| *m == minute);
        }
        let window = families.entry(family).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1 >= per_minute {
            return false;
        }
        window.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_has_its_own_budget() {
        let b = RefreshBudget::default();
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(b.spend(one, 2) && b.spend(one, 2));
        assert!(!b.spend(one, 2));
        assert!(b.spend(two, 2));
        assert!(b.spend(one, 0), "0: no limit");
    }
}
