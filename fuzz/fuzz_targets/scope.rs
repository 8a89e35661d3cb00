//! `ScopeSet::parse` never panics, and `parse(to_space_separated())` gives the same set back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::oauth::scope::ScopeSet;

fuzz_target!(|s: &str| {
    let Ok(set) = ScopeSet::parse(s) else { return };
    let printed = set.to_space_separated();
    assert!(printed.len() <= s.len(), "{s:?} printed longer: {printed:?}");
    assert_eq!(ScopeSet::parse(&printed).as_ref(), Ok(&set), "{s:?} -> {printed:?}");
    assert_eq!(set.to_string(), printed);
    for token in set.iter() {
        assert!(!token.is_empty() && s.split(' ').any(|t| t == token), "{token:?} not in {s:?}");
    }
});
